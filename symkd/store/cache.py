"""The request-level cache: content-addressed ``requests`` and ``responses`` rows.

A response row is keyed by the request's sha256 key, so writing the same answer twice is a
no-op (upsert), and a killed run loses at most the answers still in the writer's buffer,
which a rerun simply asks for again. Only ``status = 'ok'`` rows answer from the cache;
failed rows keep their reason and are retried by the next run. An ``ok`` row is final: a
later failure for the same key (another process whose server timed out) never replaces it,
while an ``ok`` answer does replace a stored failure.
"""

from __future__ import annotations

import functools
import time
from typing import Iterable, Iterator, Sequence

from symkd.store.db import Store, to_json, utcnow
from symkd.teachers.messages import Completion, Request, Response, Usage

_CHUNK = 500


def request_row(request: Request, key: str, backend: str, model: str) -> dict:
    return {
        "key": key,
        "backend": backend,
        "model": model,
        "kind": request.kind,
        "input": to_json(request.input_payload()),
        "params": to_json(request.params.model_dump(mode="json")),
        "sample_index": request.sample_index,
        "created_at": utcnow(),
    }


def response_row(key: str, response: Response) -> dict:
    first = response.completions[0] if response.completions else None
    return {
        "key": key,
        "status": "ok" if response.ok else "failed",
        "text": first.text if first else None,
        "completions": to_json([c.model_dump() for c in response.completions]),
        "finish_reason": first.finish_reason if first else None,
        "prompt_tokens": response.usage.prompt_tokens,
        "completion_tokens": response.usage.completion_tokens,
        "error": response.error,
        "attempts": response.attempts,
        "latency_s": round(response.latency_s, 4),
        "created_at": utcnow(),
    }


def row_to_response(row: dict) -> Response:
    import json

    return Response(
        completions=[Completion(**c) for c in json.loads(row["completions"] or "[]")],
        usage=Usage(prompt_tokens=row["prompt_tokens"] or 0, completion_tokens=row["completion_tokens"] or 0),
        error=row["error"],
        attempts=row["attempts"] or 1,
        latency_s=row["latency_s"] or 0.0,
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def answered_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these keys already have a successful response."""
    found: set[str] = set()
    for chunk in _chunks(list(keys)):
        marks = ",".join("?" * len(chunk))
        rows = store.conn.execute(
            f"select key from responses where status = 'ok' and key in ({marks})", list(chunk)
        ).fetchall()
        found.update(r[0] for r in rows)
    return found


def get_responses(store: Store, keys: Sequence[str]) -> dict[str, Response]:
    out: dict[str, Response] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        marks = ",".join("?" * len(chunk))
        for row in store.query(f"select * from responses where key in ({marks})", list(chunk)):
            out[row["key"]] = row_to_response(row)
    return out


class ResponseWriter:
    """Buffers answers and writes them in short transactions (every ``interval`` s or ``size`` rows).

    With an ``owner`` (see :mod:`symkd.store.claims`) each answer's claim is released in the
    transaction that stores the answer.
    """

    def __init__(self, store: Store, *, interval: float = 0.25, size: int = 256, owner: str | None = None):
        self.store = store
        self.interval, self.size = interval, size
        self.owner = owner
        self.buffer: list[dict] = []
        self.last = time.monotonic()

    def add(self, key: str, response: Response) -> None:
        self.buffer.append(response_row(key, response))
        if len(self.buffer) >= self.size or time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.buffer:
            return
        rows, self.buffer = self.buffer, []
        write_responses(self.store, rows, owner=self.owner)


@functools.lru_cache(maxsize=8)
def _upsert_sql(columns: tuple[str, ...]) -> str:
    """One statement for the hot path; the WHERE keeps a stored ok answer from being replaced."""
    marks = ", ".join("?" * len(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "key")
    return (
        f"insert into responses ({', '.join(columns)}) values ({marks}) "
        f"on conflict(key) do update set {updates} where responses.status <> 'ok'"
    )


def write_responses(store: Store, rows: Iterable[dict], *, owner: str | None = None) -> None:
    """Upsert response rows (and release ``owner``'s claims on them) in one transaction."""
    rows = list(rows)
    if not rows:
        return
    columns = tuple(rows[0])
    with store.transaction():
        store.conn.executemany(_upsert_sql(columns), [tuple(row[c] for c in columns) for row in rows])
        if owner is not None:
            store.conn.executemany("delete from claims where key = ? and owner = ?", [(row["key"], owner) for row in rows])
