"""Cached, resumable batch generation: the cache in front of any teacher.

``generate(teacher, requests, db)`` records the run, answers what the cache already has,
sends only the rest, and writes every answer as it arrives. Killing the process at any
moment and running the same call again finishes the job with nothing lost and nothing
duplicated: keys are content hashes, rows are upserted, and the run is found again by the
hash of its configuration.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

from symkd.aio import run_sync
from symkd.errors import UserError
from symkd.store import cache, runs
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.registry import cache_identity, load_teacher
from symkd.teachers.types import Request, Response
from symkd.teachers.urls import plain_model


@dataclass
class RunSummary:
    run_id: str
    total: int  # items asked for
    done: int  # answered by the teacher in this call
    cached: int  # answered from the cache
    failed: int  # still failed after retries (a rerun tries them again)
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(RunSummary)}


@dataclass
class GenerationResult(RunSummary):
    """A run's summary that also iterates ``(item id, request, response)`` in request order.

    ``response`` is None for an item that has no stored answer (a failed send is a Response
    with ``ok`` False). Responses are read from the store in chunks as the loop advances, so a
    run of millions of items does not have to fit in memory.
    """

    _requests: Sequence[Request] = field(default=(), repr=False)
    _keys: Sequence[str] = field(default=(), repr=False)
    _db: Any = field(default=None, repr=False)

    CHUNK = 500

    def __iter__(self) -> Iterator[tuple[str, Request, Response | None]]:
        store = self._db if isinstance(self._db, Store) else Store(self._db, create=False)
        try:
            for start in range(0, len(self._requests), self.CHUNK):
                keys = list(self._keys[start : start + self.CHUNK])
                found = cache.get_responses(store, keys)
                for request, key in zip(self._requests[start : start + self.CHUNK], keys):
                    yield request.id, request, found.get(key)
        finally:
            if store is not self._db:
                store.close()

    def __len__(self) -> int:
        return len(self._requests)

    def responses(self) -> dict[str, Response]:
        """Item id -> stored response (items without one are left out)."""
        return {item: resp for item, _, resp in self if resp is not None}

    def keys(self) -> dict[str, str]:
        """Item id -> request key (the cache key)."""
        return {r.id: k for r, k in zip(self._requests, self._keys)}


def _open_store(db: str | Path | Store) -> Store:
    return db if isinstance(db, Store) else Store(db)


def generate(
    teacher: str | Teacher,
    requests: Sequence[Request],
    db: str | Path | Store,
    *,
    kind: str = "generate",
    config: dict[str, Any] | None = None,
    progress: bool = True,
    **teacher_options: Any,
) -> GenerationResult:
    """Blocking form of :func:`agenerate`; works inside a running event loop (Jupyter) too."""
    return run_sync(agenerate(teacher, requests, db, kind=kind, config=config, progress=progress, **teacher_options))


async def agenerate(
    teacher: str | Teacher,
    requests: Sequence[Request],
    db: str | Path | Store,
    *,
    kind: str = "generate",
    config: dict[str, Any] | None = None,
    progress: bool = True,
    **teacher_options: Any,
) -> GenerationResult:
    """Answer ``requests`` through the cache in ``db``; load the teacher only if work is left.

    The result carries the run's counts and iterates ``(item id, request, response)``.
    ``teacher_options`` are :class:`symkd.teachers.options.TeacherOptions` fields.
    """
    started = time.monotonic()
    _check_ids(requests)
    if not requests:
        raise UserError("nothing to generate: no requests")
    owned = not isinstance(teacher, Teacher)
    loaded: Teacher | None = None if owned else teacher  # type: ignore[assignment]
    identity = cache_identity(teacher, **teacher_options) if owned else teacher.cache_identity()  # type: ignore[union-attr]
    if identity is None:  # e.g. a LangChain factory: its identity is known once built
        loaded = load_teacher(teacher, **teacher_options)
        identity = loaded.cache_identity()
    backend, model_id = identity
    keys = [r.cache_key(backend, model_id) for r in requests]
    store = db if isinstance(db, Store) else (Store(db) if Path(db).exists() else None)
    try:
        answered = cache.answered_keys(store, keys) if store is not None else set()
        if len(answered) < len(set(keys)):
            if loaded is None:
                loaded = load_teacher(teacher, **teacher_options)
            await loaded.preflight()  # fail before anything is written
        if store is None:
            store = Store(db)
        describe = loaded.describe() if loaded else {"backend": backend, "model": plain_model(model_id)}
        return await _run(loaded, describe, requests, keys, answered, store, kind, config, progress, started,
                          caller_store=isinstance(db, Store))
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
) -> GenerationResult:
    config = dict(config or {})
    run_id = runs.run_fingerprint(kind, describe, config, keys)
    templates = sorted({(r.template_id, r.template_version or "") for r in requests if r.template_id})
    runs.open_run(
        store,
        run_id,
        kind=kind,
        teacher=describe,
        config=config,
        templates=[{"id": t, "version": v} for t, v in templates],
    )
    _record_items(store, run_id, describe["backend"], describe["model"], requests, keys)

    todo: dict[str, Request] = {}
    for request, key in zip(requests, keys):
        if key not in answered and key not in todo:
            todo[key] = request
    key_of = {id(req): key for key, req in todo.items()}
    items_per_key: dict[str, int] = {}
    for key in keys:
        items_per_key[key] = items_per_key.get(key, 0) + 1

    cached = sum(1 for key in keys if key in answered)
    counts = {"done": 0, "failed": 0}
    writer = cache.ResponseWriter(store)
    label = f"{describe['backend']}:{describe['model']}"
    bar = _Progress(len(requests), cached, enabled=progress and bool(todo), label=label)

    def on_response(request: Request, response: Response) -> None:
        key = key_of[id(request)]
        writer.add(key, response)
        n = items_per_key[key]
        counts["done" if response.ok else "failed"] += n
        bar.advance(n, failed=not response.ok)

    status = "failed"
    try:
        if todo:
            assert teacher is not None
            with bar:
                await teacher.agenerate(list(todo.values()), on_response)
        status = "done" if counts["failed"] == 0 else "incomplete"
    finally:
        writer.flush()
        runs.finish_run(store, run_id, status)
    return GenerationResult(
        run_id=run_id,
        total=len(requests),
        done=counts["done"],
        cached=cached,
        failed=counts["failed"],
        seconds=round(time.monotonic() - started, 3),
        _requests=list(requests),
        _keys=keys,
        _db=store if caller_store else store.path,
    )


def _check_ids(requests: Sequence[Request]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise UserError(f"duplicate item id {request.id!r}")
        seen.add(request.id)


def _record_items(
    store: Store, run_id: str, backend: str, model_id: str, requests: Sequence[Request], keys: list[str]
) -> None:
    """Write the request rows and the run's item list up front (idempotent)."""
    with store.transaction() as db:
        db["requests"].insert_all(
            (cache.request_row(r, k, backend, model_id) for r, k in zip(requests, keys)),
            pk="key",
            ignore=True,
            batch_size=500,
        )
        db["run_items"].insert_all(
            (
                {
                    "run_id": run_id,
                    "item_id": r.id,
                    "request_key": k,
                    "template_id": r.template_id,
                    "template_version": r.template_version,
                }
                for r, k in zip(requests, keys)
            ),
            pk=("run_id", "item_id"),
            ignore=True,
            batch_size=500,
        )


def run_results(db: str | Path | Store, run_id: str) -> list[dict[str, Any]]:
    """One dict per item of a run: id, status, completions (texts), error."""
    store = _open_store(db)
    try:
        runs.get_run(store, run_id)
        items = store.query(
            "select item_id, request_key, template_id, template_version from run_items "
            "where run_id = ? order by rowid",
            (run_id,),
        )
        responses = cache.get_responses(store, [i["request_key"] for i in items])
    finally:
        if not isinstance(db, Store):
            store.close()
    out = []
    for item in items:
        resp = responses.get(item["request_key"])
        out.append(
            {
                "id": item["item_id"],
                "status": "pending" if resp is None else ("ok" if resp.ok else "failed"),
                "completions": [c.text for c in resp.completions] if resp else [],
                "finish_reasons": [c.finish_reason for c in resp.completions] if resp else [],
                "error": resp.error if resp else None,
                "template_id": item["template_id"],
                "template_version": item["template_version"],
                "key": item["request_key"],
            }
        )
    return out


class _Progress:
    """A tqdm bar on stderr with the failed count (quiet when disabled)."""

    def __init__(self, total: int, completed: int, *, enabled: bool, label: str):
        self.enabled = enabled
        self.failed = 0
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=completed, desc=label, unit="item", dynamic_ncols=True,
                            postfix={"failed": 0}, delay=0.5)  # fmt: skip

    def advance(self, n: int, *, failed: bool) -> None:
        if failed:
            self.failed += n
        if self.bar is not None:
            if failed:
                self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(n)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
