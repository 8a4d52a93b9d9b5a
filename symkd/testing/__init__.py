"""Helpers for testing pipelines without a real model (loopback servers)."""
