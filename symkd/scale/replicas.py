"""Cache identity of a teacher served by several replicas of one model.

An OpenAI-compatible teacher's cache keys name the server (``model@http://host:8000/v1``,
see :mod:`symkd.teachers.urls`): two servers may serve different models under one name.
Replicas of the *same* model behind several base URLs (``vllm serve MODEL`` once per GPU)
must share one cache, whichever replica answered, so their identity is the group: the
user's ``--endpoint-group NAME`` when given (stable when replicas are added or moved), else
the sorted, normalised URLs (adding a replica then starts a new cache: name the group).
"""

from __future__ import annotations

from typing import Sequence

from symkd.errors import UserError
from symkd.teachers.urls import endpoint_identity, model_at, safe_url


def group_model(model_id: str, urls: Sequence[str], group: str | None) -> str:
    """The model part of the cache key for ``model_id`` served at every one of ``urls``."""
    if group:
        return f"{model_id}@group:{group.strip()}"
    if len(set(urls)) == 1:  # one server: the same keys as --base-url URL
        return model_at(model_id, urls[0])
    endpoints = sorted({endpoint_identity(u) or "https://api.openai.com/v1" for u in urls})
    return f"{model_id}@{'|'.join(endpoints)}"


def check_replicas(backend: str, urls: Sequence[str], options: dict) -> None:
    """Replicas are OpenAI-compatible servers, and replace a single --base-url."""
    if not urls:
        return
    if backend != "openai":
        raise UserError(f"--replicas: only openai-compatible teachers have base URLs, not {backend!r}")
    if options.get("base_url"):
        raise UserError("--replicas replaces --base-url: give the URLs once, in --replicas")
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise UserError(f"--replicas: {bad[0]!r} is not an http(s) URL")


def recorded(urls: Sequence[str]) -> list[str]:
    """The URLs as they may be written to the run row (no credentials)."""
    return [safe_url(u) or "" for u in urls]
