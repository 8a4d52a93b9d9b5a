"""The run: check and key the requests, record the run, send what the cache lacks, close it.

:func:`agenerate` loads the teacher only when work is left; :func:`_run` records the run and its
items, sends the unanswered keys through :func:`symkd.generation.send.send` and records how the
run ended (``done``, ``incomplete``, ``interrupted`` or ``failed``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Sequence

from symkd.aio import run_sync
from symkd.errors import UserError
from symkd.generation.progress_bar import Progress
from symkd.generation.records import GenerationResult, cache_keys, check_ids, record_items
from symkd.generation.send import send
from symkd.store import cache, claims, runs
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.options import as_options, fields as option_fields
from symkd.teachers.registry import teacher_spec
from symkd.teachers.messages import Request
from symkd.teachers.urls import plain_model


def generate(
    teacher: Any,
    requests: Sequence[Request],
    db: str | Path | Store,
    *,
    kind: str = "generate",
    config: dict[str, Any] | None = None,
    progress: bool = True,
    adopt: bool | None = None,
    stage: str | None = None,
    **teacher_options: Any,
) -> GenerationResult:
    """Blocking form of :func:`agenerate`; works inside a running event loop (Jupyter) too."""
    return run_sync(agenerate(teacher, requests, db, kind=kind, config=config, progress=progress, adopt=adopt,
                              stage=stage, **teacher_options))  # fmt: skip


async def agenerate(
    teacher: Any,
    requests: Sequence[Request],
    db: str | Path | Store,
    *,
    kind: str = "generate",
    config: dict[str, Any] | None = None,
    progress: bool = True,
    adopt: bool | None = None,
    stage: str | None = None,
    **teacher_options: Any,
) -> GenerationResult:
    """Answer ``requests`` through the cache in ``db``; load the teacher only if work is left.

    The result carries the run's counts and iterates ``(item id, request, response)``.
    ``teacher`` is a spec string, a :class:`~symkd.teachers.spec.TeacherSpec`, a Teacher or a
    LangChain chat model (identified by its parameters); ``teacher_options`` are
    :class:`symkd.teachers.options.TeacherOptions` fields; ``adopt`` lets symkd add its tables
    to an existing SQLite file that is not a symkd database; ``stage`` names the run in its
    progress bar (``[stage] backend:model``).
    Everything is checked (ids, text, options) before anything is sent or written.
    """
    started = time.monotonic()
    check_ids(requests)
    if not requests:
        raise UserError("nothing to generate: no requests")
    as_options({k: v for k, v in teacher_options.items() if k in option_fields()})
    spec = teacher_spec(teacher, **teacher_options)
    loaded: Teacher | None = spec.teacher
    owned = loaded is None  # a Teacher passed in stays its owner's
    identity = spec.identity
    if identity is None:  # a plugin backend: its identity is known once built
        loaded = spec.load()
        identity = loaded.cache_identity()
    backend, model_id = identity
    keys = cache_keys(requests, backend, model_id)
    store = db if isinstance(db, Store) else (Store(db, adopt=adopt) if Path(db).exists() else None)
    try:
        answered = cache.answered_keys(store, keys) if store is not None else set()
        if len(answered) < len(set(keys)):
            if loaded is None:
                loaded = spec.load()
            await loaded.preflight()  # fail before anything is written
        if store is None:
            store = Store(db, adopt=adopt)
        describe = loaded.describe() if loaded else {"backend": backend, "model": plain_model(model_id)}
        return await _run(loaded, describe, requests, keys, answered, store, kind, config, progress, started,
                          caller_store=isinstance(db, Store), stage=stage)  # fmt: skip
    finally:
        if owned and loaded is not None:
            await loaded.aclose()
        if store is not None and not isinstance(db, Store):
            store.close()


async def _run(
    teacher: Teacher | None,
    describe: dict[str, Any],
    requests: Sequence[Request],
    keys: list[str],
    answered: set[str],
    store: Store,
    kind: str,
    config: dict[str, Any] | None,
    progress: bool,
    started: float,
    *,
    caller_store: bool,
    stage: str | None = None,
) -> GenerationResult:
    config = dict(config or {})
    run_id = runs.run_fingerprint(kind, describe, config, keys)
    templates = sorted({(r.template_id, r.template_version or "") for r in requests if r.template_id})
    owner = claims.Owner()
    runs.open_run(store, run_id, kind=kind, teacher=describe, config=config,
                  templates=[{"id": t, "version": v} for t, v in templates], owner=owner)  # fmt: skip
    record_items(store, run_id, describe["backend"], describe["model"], requests, keys)

    todo: dict[str, Request] = {}
    for request, key in zip(requests, keys):
        if key not in answered and key not in todo:
            todo[key] = request
    items_per_key: dict[str, int] = {}
    for key in keys:
        items_per_key[key] = items_per_key.get(key, 0) + 1
    cached = sum(1 for key in keys if key in answered)
    label = f"{describe['backend']}:{describe['model']}"
    if stage:
        label = f"[{stage}] {label}"
    bar = Progress(len(requests), cached, enabled=progress and bool(todo), label=label)
    counts = {"done": 0, "failed": 0, "others": 0}
    try:
        if todo:
            assert teacher is not None
            await send(teacher, store, owner, run_id, todo, items_per_key, counts, bar)
        status = "done" if counts["failed"] == 0 else "incomplete"
    except (asyncio.CancelledError, KeyboardInterrupt):
        runs.finish_run(store, run_id, "interrupted")
        raise
    except BaseException:
        runs.finish_run(store, run_id, "failed")
        raise
    runs.finish_run(store, run_id, status)
    return GenerationResult(
        run_id=run_id,
        total=len(requests),
        done=counts["done"],
        cached=cached + counts["others"],
        failed=counts["failed"],
        seconds=round(time.monotonic() - started, 3),
        _requests=list(requests),
        _keys=keys,
        _db=store if caller_store else store.path,
    )
