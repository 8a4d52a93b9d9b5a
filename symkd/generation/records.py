"""What a run leaves behind: its summary and result, the rows recorded up front, per-item results.

The result iterates ``(item id, request, response)`` from the store; the request rows and the
run's item list are written before anything is sent, so a rerun finds the run and its items.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

from symkd.errors import UserError
from symkd.store import cache, runs
from symkd.store.db import Store, opened
from symkd.teachers.messages import Request, Response


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
        with opened(self._db, create=False) as store:
            for start in range(0, len(self._requests), self.CHUNK):
                keys = list(self._keys[start : start + self.CHUNK])
                found = cache.get_responses(store, keys)
                for request, key in zip(self._requests[start : start + self.CHUNK], keys):
                    yield request.id, request, found.get(key)

    def __len__(self) -> int:
        return len(self._requests)

    def responses(self) -> dict[str, Response]:
        """Item id -> stored response (items without one are left out)."""
        return {item: resp for item, _, resp in self if resp is not None}

    def keys(self) -> dict[str, str]:
        """Item id -> request key (the cache key)."""
        return {r.id: k for r, k in zip(self._requests, self._keys)}


def cache_keys(requests: Sequence[Request], backend: str, model_id: str) -> list[str]:
    """The requests' keys; text that is not valid Unicode (a lone surrogate) is named here."""
    keys = []
    for request in requests:
        try:
            keys.append(request.cache_key(backend, model_id))
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise UserError(f"item {request.id!r}: text holds {bad!r}, a lone surrogate (not valid Unicode)") from None
    return keys


def check_ids(requests: Sequence[Request]) -> None:
    seen: set[str] = set()
    for request in requests:
        try:
            request.id.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"item id {request.id!r}: a lone surrogate (not valid Unicode)") from None
        if request.id in seen:
            raise UserError(f"duplicate item id {request.id!r}")
        seen.add(request.id)


def record_items(
    store: Store, run_id: str, backend: str, model_id: str, requests: Sequence[Request], keys: list[str]
) -> None:
    """Write the request rows and the run's item list up front (idempotent).

    Rows already stored are left as they are (as ``insert or ignore`` would) and are not built
    again: a rerun of a recorded run reads which are there and writes nothing (2,000 request
    rows cost ~0.13 s to build and re-insert).
    """
    with store.transaction() as db:
        have_items = {row[0] for row in store.conn.execute("select item_id from run_items where run_id = ?", (run_id,))}
        have_keys = stored_request_keys(store, keys)
        new_requests = [(r, k) for r, k in zip(requests, keys) if k not in have_keys]
        new_items = [(r, k) for r, k in zip(requests, keys) if r.id not in have_items]
        if new_requests:
            db["requests"].insert_all(
                (cache.request_row(r, k, backend, model_id) for r, k in new_requests),
                pk="key",
                ignore=True,
                batch_size=500,
            )
        if new_items:
            db["run_items"].insert_all(
                (
                    {
                        "run_id": run_id,
                        "item_id": r.id,
                        "request_key": k,
                        "template_id": r.template_id,
                        "template_version": r.template_version,
                    }
                    for r, k in new_items
                ),
                pk=("run_id", "item_id"),
                ignore=True,
                batch_size=500,
            )


def stored_request_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these keys have a request row."""
    found: set[str] = set()
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        rows = store.conn.execute(f"select key from requests where key in ({','.join('?' * len(chunk))})", chunk)
        found.update(row[0] for row in rows)
    return found


def run_results(db: str | Path | Store, run_id: str) -> list[dict[str, Any]]:
    """One dict per item of a run: id, status, completions (texts), error."""
    with opened(db) as store:
        runs.get_run(store, run_id)
        items = store.query(
            "select item_id, request_key, template_id, template_version from run_items "
            "where run_id = ? order by rowid",
            (run_id,),
        )
        responses = cache.get_responses(store, [i["request_key"] for i in items])
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
