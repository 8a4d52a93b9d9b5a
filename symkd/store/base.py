"""The run store's low-level half: the connection, transactions and meta helpers (imports nothing of symkd.store).

WAL mode and a busy timeout let several processes write one file; writes go through
:meth:`Store.transaction`, which takes the write lock up front (``BEGIN IMMEDIATE``) so two
writers queue instead of failing with "database is locked". The schema is versioned in the
``meta`` table and migrated forward on open by the schema that :func:`set_schema` registers
(:mod:`symkd.store.schema` does, on import; importing ``symkd.store`` imports it). Foreign keys are
declared for browsing and auditing, not enforced on write (see :class:`Store`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple
from urllib.parse import quote

from symkd.errors import UserError

if TYPE_CHECKING:
    import sqlite_utils


_OPTIONAL = ("pandas", "numpy")


@functools.lru_cache(maxsize=1)
def load_sqlite_utils():  # type: ignore[no-untyped-def]
    """sqlite_utils imports pandas (0.4-1 s of every command's start-up on 2 cores) and numpy
    (~85 ms) only to map ``pandas.Timestamp`` and numpy scalar types to column types when it
    creates or alters a table; skip those imports unless the library is loaded already (a later
    ``import numpy`` works as usual). The type mapping looks them up when it meets a type it does
    not know (:class:`_ColumnTypes`): a numpy or pandas value can only exist once its library is
    loaded, so tables are created exactly as with sqlite_utils' own eager imports."""
    blocked = [name for name in _OPTIONAL if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # import numpy -> ImportError
    try:
        import sqlite_utils
        import sqlite_utils.db
    finally:
        for name in blocked:
            del sys.modules[name]
    if blocked and not isinstance(sqlite_utils.db.COLUMN_TYPE_MAPPING, _ColumnTypes):
        sqlite_utils.db.COLUMN_TYPE_MAPPING = _ColumnTypes(sqlite_utils.db.COLUMN_TYPE_MAPPING)
    return sqlite_utils


class _ColumnTypes(dict):
    """sqlite_utils' ``COLUMN_TYPE_MAPPING`` that adds the numpy and pandas types (the ones
    sqlite_utils adds when it imports them itself) on the first lookup of a type it lacks."""

    _added: frozenset = frozenset()

    def _add_optional(self) -> bool:
        loaded = frozenset(name for name in _OPTIONAL if sys.modules.get(name) is not None)
        if loaded <= self._added:
            return False
        self._added = loaded
        np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
        if np is not None:
            names = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
            self.update({getattr(np, n): "INTEGER" for n in names if hasattr(np, n)})
            self.update({getattr(np, n): "REAL" for n in ("float16", "float32", "float64") if hasattr(np, n)})
        if pd is not None and hasattr(pd, "Timestamp"):
            self[pd.Timestamp] = "TEXT"
        return True

    def __missing__(self, key: Any) -> str:
        if self._add_optional() and key in self:
            return self[key]
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default



BUSY_TIMEOUT_S = 60.0


class Schema(NamedTuple):
    """What a Store does on open: ``check(path, conn, adopt) -> version`` reads the marker
    without writing (and refuses what is not symkd's); ``migrate(store) -> version`` brings the
    file up to date. Registered by :mod:`symkd.store.schema`."""

    check: Callable[[Path, sqlite3.Connection, bool], int]
    migrate: Callable[["Store"], int]


_SCHEMA: list[Schema] = []


def set_schema(schema: Schema) -> None:
    _SCHEMA[:] = [schema]


def _schema() -> Schema:
    if not _SCHEMA:  # importing symkd.store registers it; only a half-imported package lacks it
        raise RuntimeError("symkd.store.schema is not loaded (import symkd.store first)")
    return _SCHEMA[0]



def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


#: whether a Store adopts a foreign SQLite file when not told (``symkd --adopt`` sets it)
_ADOPT_DEFAULT = False


def set_adopt_default(value: bool) -> None:
    """Let every Store opened from now on adopt a foreign database (the CLI's ``--adopt``)."""
    global _ADOPT_DEFAULT
    _ADOPT_DEFAULT = bool(value)


class Store:
    """A connection to one run database (thread-safe for the simple uses here).

    Opening never changes a file before it is known to be symkd's: the schema marker
    (``meta.schema_version``) and its version are read first, with nothing written, and a
    non-empty SQLite file without the marker is refused unless ``adopt`` is true. Only then
    is the journal switched to WAL and the schema migrated. ``readonly`` opens the file
    read-only (``mode=ro``, or ``immutable=1`` where the folder cannot hold WAL side files)
    and never migrates. Checking the marker and migrating are the registered schema's
    (:func:`set_schema`).
    """

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False, adopt: bool | None = None):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise UserError(f"{self.path}: no such database")
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder, expected a SQLite run database")
        if self.path.parent and not self.path.parent.exists():
            raise UserError(f"{self.path}: folder {self.path.parent} does not exist")
        self.readonly = readonly
        try:
            conn = _connect(self.path, readonly)
            self.version = _schema().check(self.path, conn, _ADOPT_DEFAULT if adopt is None else adopt)
            if not readonly:
                # Switching to WAL needs a lock that SQLite does not wait for (no busy handler):
                # a second process opening a new file at the same instant would fail at once.
                _while_locked(self.path, lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA synchronous = NORMAL")
            # Foreign keys are declared (Datasette and sqlite-utils follow them, ``PRAGMA
            # foreign_key_check`` audits them) but not enforced: provenance may point outside
            # the file (triples imported with another store's run_id, heads that are not stored
            # events) and such rows are kept as they are (see symkd.store.schema_links and the pipelines' tables).
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA recursive_triggers = ON")  # as sqlite-utils' Database sets it (REPLACE fires delete triggers)
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: {_reason(exc)}") from None
        self.conn = conn
        self._lock = threading.RLock()
        self._depth = 0
        if not readonly:
            try:
                self.version = _schema().migrate(self)
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{self.path}: {_reason(exc)}") from None

    @functools.cached_property
    def db(self) -> "sqlite_utils.Database":
        """sqlite-utils' view of the connection (table objects, inserts, schema changes), made on
        first use: plain reads and writes go through ``conn``/``query`` without loading it."""
        return load_sqlite_utils().Database(self.conn)

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; nested calls join the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield _DatabaseOnUse(self)
                finally:
                    self._depth -= 1
                return
            self._begin_immediate()
            self._depth = 1
            try:
                yield _DatabaseOnUse(self)
            except BaseException:
                self._depth = 0
                self.conn.execute("ROLLBACK")
                raise
            self._depth = 0
            self.conn.execute("COMMIT")

    def _begin_immediate(self) -> None:
        # sqlite's own busy handler covers most waits; this loop covers the rest.
        _while_locked(self.path, lambda: self.conn.execute("BEGIN IMMEDIATE"))

    # -- small helpers ------------------------------------------------------------------
    def query(self, sql: str, params: Any = ()) -> list[dict]:
        """Rows as dicts (column name -> value), as sqlite-utils' ``Database.query`` gives them."""
        with self._lock:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def scalar(self, sql: str, params: Any = ()) -> Any:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def meta(self, key: str) -> str | None:
        return self.scalar("select value from meta where key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("insert into meta (key, value) values (?, ?) "
                              "on conflict(key) do update set value = excluded.value", (key, value))  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def opened(db: "str | Path | Store", **options: Any) -> Iterator["Store"]:
    """``db`` as an open :class:`Store`: the caller's own Store as it is (left open), or one opened
    on the path with ``options`` (``create=``, ``readonly=``, ``adopt=``) and closed on the way out."""
    if isinstance(db, Store):
        yield db
        return
    store = Store(db, **options)
    try:
        yield store
    finally:
        store.close()


class _DatabaseOnUse:
    """What :meth:`Store.transaction` yields: sqlite-utils' ``Database`` of the store, made only
    when the block uses it (``db["runs"]``, ``db.execute``), so a block of plain SQL does not
    load the library."""

    __slots__ = ("_store",)

    def __init__(self, store: Store):
        self._store = store

    def __getitem__(self, name: str) -> Any:
        return self._store.db[name]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store.db, name)


def _while_locked(path: Path, statement: Callable[[], Any]) -> None:
    """Run ``statement`` again every 50 ms while another connection holds the lock it needs, up
    to :data:`BUSY_TIMEOUT_S`; then one clear error."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise UserError(f"{path}: database stayed locked for {BUSY_TIMEOUT_S:.0f}s") from None
            time.sleep(0.05)


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """A connection with symkd's settings that has written nothing yet."""
    if readonly:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        try:
            conn = _open(uri, uri=True)
            conn.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL database in a folder that cannot take its -shm file (a read-only mount or
            # folder): nobody can be writing it there, so it can be read as immutable.
            wal = path.with_name(path.name + "-wal")
            if wal.exists() and wal.stat().st_size:
                raise
            conn = _open(uri + "&immutable=1", uri=True)
    else:
        conn = _open(str(path), uri=False)
    conn.create_function("version_key", 1, version_key, deterministic=True)
    return conn


def _open(target: str, *, uri: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        target,
        uri=uri,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,  # we open transactions ourselves
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _reason(exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"cannot write the database ({text})"
    return f"not a usable SQLite database ({text})"


def version_key(version: str | None) -> str:
    """A text that sorts like the version: ``"9" < "10"``, ``"1.2" < "1.10"`` (SQL: ``version_key(x)``)."""
    parts = re.split(r"[.\-+_]", str(version or ""))
    return ".".join(p.zfill(12) if p.isdigit() else p for p in parts)


def latest_version(versions: Any) -> str | None:
    """The highest of some version strings (None when there are none)."""
    return max(versions, key=version_key, default=None)


def to_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
