"""Shard files: each Ray worker's own SQLite file of the answers it produced.

Workers never write the run database (one writer, no lock contention across nodes); each
writes every answer to its shard file as it arrives, under the request key the driver gave
it, and returns the rows to the driver, which writes them through the normal cache writer.
What a lost worker or a killed driver leaves behind is in the shard files: the next
``ask`` reads them before sending anything (:func:`lookup`), and :func:`merge` folds them
into the run database and deletes them once everything they hold is there. Both only add
``ok`` answers a store does not have yet, so running them twice changes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

from symkd.store import cache
from symkd.store.db import Store

COLUMNS = ("key", "status", "text", "completions", "finish_reason", "prompt_tokens", "completion_tokens",
           "error", "attempts", "latency_s", "created_at")  # fmt: skip
_CREATE = f"create table if not exists responses ({', '.join(COLUMNS)}, primary key (key))"
_CHUNK = 500


def default_dir(db_path: str | Path) -> Path:
    """``run.db`` -> ``run.db.shards/`` (next to the database, so the driver can read it)."""
    path = Path(db_path)
    return path.with_name(path.name + ".shards")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_CREATE)
    return conn


class ShardWriter:
    """One worker's shard file: buffered upserts, flushed every ``size`` rows or ``interval`` s."""

    def __init__(self, path: str | Path, *, interval: float = 0.25, size: int = 64):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = _connect(self.path)
        self.interval, self.size = interval, size
        self.buffer: list[dict] = []
        self.last = time.monotonic()

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.size or time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.buffer:
            return
        rows, self.buffer = self.buffer, []
        marks = ", ".join("?" * len(COLUMNS))
        with self.conn:
            self.conn.execute("begin immediate")
            self.conn.executemany(f"insert or replace into responses values ({marks})",
                                  [tuple(r[c] for c in COLUMNS) for r in rows])  # fmt: skip

    def close(self) -> None:
        self.flush()
        self.conn.close()


def shard_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.glob("*.db")) if folder.is_dir() else []


def _ok_rows(path: Path, keys: Sequence[str] | None) -> list[dict]:
    conn = _connect(path)
    conn.row_factory = sqlite3.Row
    try:
        if keys is None:
            return [dict(r) for r in conn.execute("select * from responses where status = 'ok'")]
        out: list[dict] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            sql = f"select * from responses where status = 'ok' and key in ({','.join('?' * len(chunk))})"
            out += [dict(r) for r in conn.execute(sql, chunk)]
        return out
    finally:
        conn.close()


def lookup(folder: str | Path, keys: Sequence[str]) -> dict[str, dict]:
    """key -> an ``ok`` response row some shard file holds for it."""
    found: dict[str, dict] = {}
    for path in shard_files(folder):
        wanted = [k for k in keys if k not in found]
        if not wanted:
            break
        found.update((row["key"], row) for row in _ok_rows(path, wanted))
    return found


def merge(store: Store, folder: str | Path, *, delete: bool = True) -> dict[str, int]:
    """Fold the shard files' ``ok`` answers the store lacks into it (idempotent); delete the
    files whose every answer the store then has. Returns {files, merged, kept_files}."""
    counts = {"files": 0, "merged": 0, "kept_files": 0}
    for path in shard_files(folder):
        counts["files"] += 1
        rows = _ok_rows(path, None)
        merged, complete = _fold(store, rows)
        counts["merged"] += merged
        if complete and delete:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            counts["kept_files"] += 1
    if delete and Path(folder).is_dir() and not any(Path(folder).iterdir()):
        Path(folder).rmdir()
    return counts


def _fold(store: Store, rows: Iterable[dict]) -> tuple[int, bool]:
    """Write rows whose request the store knows and whose answer it lacks; (written, all placed)."""
    rows = list(rows)
    keys = [r["key"] for r in rows]
    answered = cache.answered_keys(store, keys)
    known = _known_requests(store, keys)
    todo = [r for r in rows if r["key"] not in answered and r["key"] in known]
    cache.write_responses(store, todo)
    return len(todo), all(r["key"] in known for r in rows)


def _known_requests(store: Store, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = list(keys[start : start + _CHUNK])
        rows = store.conn.execute(f"select key from requests where key in ({','.join('?' * len(chunk))})", chunk)
        found.update(r[0] for r in rows)
    return found
