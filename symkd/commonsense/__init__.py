"""Symbolic commonsense distillation (ATOMIC-style triples)."""
