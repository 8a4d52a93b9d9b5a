"""The run store: one SQLite file, managed with sqlite-utils.

WAL mode and a busy timeout let several processes write one file; writes go through
:meth:`Store.transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``) so two
writers queue instead of failing with "database is locked". The schema is versioned in the
``meta`` table and migrated forward on open (see :mod:`symkd.store.schema`).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from symkd.errors import UserError
from symkd.store import schema

BUSY_TIMEOUT_S = 60.0


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """A connection to one run database (thread-safe for the simple uses here)."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise UserError(f"{self.path}: no such database")
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"{self.path}: folder {self.path.parent} does not exist")
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        try:
            conn = sqlite3.connect(
                uri,
                uri=readonly,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # we open transactions ourselves
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.create_function("version_key", 1, version_key, deterministic=True)
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a usable SQLite database ({exc})") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._lock = threading.RLock()
        self._depth = 0
        if not readonly:
            try:
                schema.migrate(self)
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{self.path}: not a usable SQLite database ({exc})") from None

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; nested calls join the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self._begin_immediate()
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def _begin_immediate(self) -> None:
        # sqlite's own busy handler covers most waits; this loop covers the rest.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise UserError(f"{self.path}: database stayed locked for {BUSY_TIMEOUT_S:.0f}s") from None
                time.sleep(0.05)

    # -- small helpers ------------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> list[dict]:
        with self._lock:
            return list(self.db.query(sql, params))

    def scalar(self, sql: str, params: Any = ()) -> Any:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def meta(self, key: str) -> str | None:
        return self.scalar("select value from meta where key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db["meta"].upsert({"key": key, "value": value}, pk="key")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def version_key(version: str | None) -> str:
    """A text that sorts like the version: ``"9" < "10"``, ``"1.2" < "1.10"`` (SQL: ``version_key(x)``)."""
    parts = re.split(r"[.\-+_]", str(version or ""))
    return ".".join(p.zfill(12) if p.isdigit() else p for p in parts)


def latest_version(versions: Any) -> str | None:
    """The highest of some version strings (None when there are none)."""
    return max(versions, key=version_key, default=None)


def to_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
