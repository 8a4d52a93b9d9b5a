"""Bulk loading of curated triples: :func:`knowledge.add_triples` semantics at graph scale.

Why ``add_triples`` is slow at 1M rows (~40k/s): sqlite-utils binds at most ~70 rows per
INSERT (SQLite's variable limit over 14 columns) and inspects every value, and rows reach the
``id`` index in hash order, so each insert lands on a random page. Here rows are prepared with
cached normalisation, staged in a TEMP table with plain ``executemany`` (one transaction on the
temp database; the run database stays unlocked), then copied by one ``INSERT OR IGNORE ...
SELECT ... ORDER BY id`` in a short write transaction, so the index fills in key order; when
the load at least doubles the table the two secondary indexes are dropped and rebuilt.
Same ids, defaults and first-wins insert-or-ignore result as ``add_triples``.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

from symkd.graphs.triples import normalize
from symkd.errors import UserError
from symkd.store.db import Store, utcnow

REQUIRED = ("head", "relation", "tail")
_STAGE = "symkd_bulk_triples"
#: entries kept in each text -> normalised-form cache
CACHE = 1_000_000


def _sha16(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def bulk_add_triples(store: Store, rows: Iterable[dict[str, Any]], *, chunk: int = 50_000, progress: bool = False) -> int:
    """Insert triples like ``knowledge.add_triples`` (ids derived, duplicates ignored); returns how many were new.

    Do not use ``store`` from another thread during the call.
    """
    columns = [r[1] for r in store.conn.execute("pragma table_info(triples)")]
    col_list = ", ".join(f'"{c}"' for c in columns)
    conn = store.conn
    conn.execute(f"drop table if exists temp.{_STAGE}")
    conn.execute(f"create temp table {_STAGE} as select * from main.triples where 0")
    insert = f"insert into temp.{_STAGE} ({col_list}) values ({', '.join('?' * len(columns))})"
    bar = None
    if progress:
        from symkd.progress import bar as progress_bar

        bar = progress_bar(desc="stage triples", unit="triple")
    outer = conn.in_transaction  # called inside the caller's transaction: join it
    try:
        if not outer:
            conn.execute("begin")  # touches only the TEMP database: main stays unlocked
        # One thread stages chunk k (sqlite releases the GIL while it steps) while this one
        # prepares chunk k+1; the connection is never used by both at once.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="symkd-bulk") as pool:
            pending = None
            for prepared in _prepare(rows, columns, chunk):
                if pending is not None:
                    pending.result()
                pending = pool.submit(conn.executemany, insert, prepared)
                if bar is not None:
                    bar.update(len(prepared))
            if pending is not None:
                pending.result()
        if not outer:
            conn.execute("commit")
        staged = conn.execute(f"select count(*) from temp.{_STAGE}").fetchone()[0]
        with store.transaction():
            # Rebuilding the secondary indexes (a sort) beats updating them row by row once
            # the load at least doubles the table; readers keep seeing the old snapshot.
            rebuild = staged and staged >= conn.execute("select count(*) from main.triples").fetchone()[0]
            indexes = conn.execute(
                "select name, sql from sqlite_master where type = 'index' and tbl_name = 'triples' and sql is not null"
            ).fetchall() if rebuild else []
            for name, _ in indexes:
                conn.execute(f'drop index main."{name}"')
            before = conn.total_changes
            conn.execute(f"insert or ignore into main.triples ({col_list}) select {col_list} from temp.{_STAGE} order by id, rowid")
            added = conn.total_changes - before
            for _, sql in indexes:
                conn.execute(sql)
            return added
    finally:
        if bar is not None:
            bar.close()
        if not outer and conn.in_transaction:
            conn.execute("rollback")
        conn.execute(f"drop table if exists temp.{_STAGE}")


def _prepare(rows: Iterable[dict[str, Any]], columns: list[str], chunk: int) -> Iterator[list[tuple]]:
    """Rows as column-ordered tuples with add_triples' defaults and derived ids, ``chunk`` at a time."""
    known = set(columns)
    defaults = {**dict.fromkeys(columns), "source": "teacher", "round": 0, "created_at": utcnow()}
    pick = operator.itemgetter(*columns)
    heads: dict[str, tuple[str, str]] = {}  # head text -> (normalised, head id)
    tails: dict[str, str] = {}  # tail text -> normalised (tails repeat a lot)
    it, index = iter(rows), 0
    while True:
        batch = list(itertools.islice(it, chunk))
        if not batch:
            return
        prepared = []
        for row in batch:
            index += 1
            try:
                head, relation, tail = row["head"], row["relation"], row["tail"]
                cached = heads.get(head)
                if cached is None:
                    norm = normalize(head)
                    cached = heads[head] = (norm, _sha16(norm))
                norm_tail = tails.get(tail)
                if norm_tail is None:
                    norm_tail = tails[tail] = normalize(tail)
                if type(relation) is not str:
                    raise TypeError
            except (KeyError, AttributeError, TypeError):
                missing = next(f for f in REQUIRED if not isinstance(row.get(f), str))
                raise UserError(f"triple {index}: field {missing!r} must be a string") from None
            if not known.issuperset(row):
                bad = sorted(set(row) - known)[0]
                raise UserError(f"triple {index}: unknown field {bad!r} (not a column of the triples table)")
            values = {**defaults, **row}
            if "id" not in row:
                values["id"] = _sha16(f"{cached[0]}\t{relation}\t{norm_tail}")
            if "head_id" not in row:
                values["head_id"] = cached[1]
            prepared.append(pick(values))
        if len(heads) > CACHE or len(tails) > CACHE:
            heads.clear()
            tails.clear()
        yield prepared
