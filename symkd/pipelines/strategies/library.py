"""The strategy library in the store: candidates, merges, edits with version history.

Writes are idempotent (a rerun of a learn round inserts nothing twice: a row that exists is
left alone, so a person's edit is never overwritten by a rerun) and every change of a
strategy's text, tags or status adds a ``strategy_versions`` row.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from symkd.errors import UserError
from symkd.store.db import Store, utcnow
from symkd.pipelines.strategies import tables

STATUSES = ("accepted", "rejected", "merged", "edited")


@dataclass
class Strategy:
    """One strategy: short, general guidance for the student, and where it came from."""

    id: str
    text: str
    status: str = "accepted"
    tags: list[str] = field(default_factory=list)
    source_scenarios: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    merged_into: str | None = None
    version: int = 1
    learn_id: str | None = None
    round: int | None = None
    teacher: str | None = None
    template_id: str | None = None
    template_version: str | None = None
    response_key: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    #: cosine similarity to the query (set by retrieval only)
    similarity: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Strategy":
        data = {k: row.get(k) for k in cls.__dataclass_fields__ if k in row}
        for name in ("tags", "source_scenarios"):
            data[name] = json.loads(row.get(name) or "[]")
        data["evidence"] = json.loads(row.get("evidence") or "{}")
        return cls(**data)


def _row(s: Strategy, embedding: np.ndarray | None) -> dict[str, Any]:
    from symkd.embeddings import to_blob

    now = utcnow()
    row = {k: v for k, v in s.as_dict().items() if k != "similarity"}
    row.update(tags=json.dumps(s.tags), source_scenarios=json.dumps(s.source_scenarios),
               evidence=json.dumps(s.evidence, ensure_ascii=False), created_at=s.created_at or now, updated_at=now,
               embedding=None if embedding is None else to_blob(embedding))  # fmt: skip
    return row


def _version_row(s: Strategy, editor: str, note: str = "") -> dict[str, Any]:
    return {"strategy_id": s.id, "version": s.version, "text": s.text, "tags": json.dumps(s.tags),
            "status": s.status, "editor": editor, "note": note, "created_at": utcnow()}  # fmt: skip


def open_library(db: str | Path | Store, *, create: bool = False, readonly: bool = False) -> Store:
    """A store holding a strategy library; an unknown file, one without the tables or one whose
    strategy tables are newer than this symkd is refused, before anything is written to it.

    ``readonly`` opens the file read-only (a 0444 file or a read-only folder work)."""
    if isinstance(db, Store):
        store = db
        tables.check_version(store)
    else:
        path = Path(db)
        if not create and not path.is_file():
            raise UserError(f"{path}: no such database")
        if path.is_file() and not readonly:
            _precheck(path, create)  # read-only first: a file that is refused stays untouched
        store = Store(path, create=create, readonly=readonly)
        try:
            tables.check_version(store)
        except UserError:
            store.close()
            raise
    if create:
        tables.ensure(store)
    elif not tables.has_tables(store):
        if store is not db:
            store.close()
        raise UserError(f"{store.path}: holds no strategy library (run `symkd strategies learn` first)")
    return store


@contextlib.contextmanager
def library_opened(db: str | Path | Store, **options: Any) -> Iterator[Store]:
    """:func:`open_library` for a ``with`` block: a store it opened is closed on the way out, the
    caller's own Store is left open."""
    store = open_library(db, **options)
    try:
        yield store
    finally:
        if store is not db:
            store.close()


def _precheck(path: Path, create: bool) -> None:
    """The checks of :func:`open_library`, on the file opened read-only (nothing written)."""
    if not path.stat().st_size:
        return  # an empty file: nothing to check, and a writer may create the library in it
    with Store(path, create=False, readonly=True) as store:
        tables.check_version(store)
        if not create and not tables.has_tables(store):
            raise UserError(f"{store.path}: holds no strategy library (run `symkd strategies learn` first)")


def insert(store: Store, strategy: Strategy, embedding: np.ndarray | None, editor: str) -> bool:
    """Add ``strategy`` (and its version 1) unless its id exists; True when it was new."""
    with store.transaction() as db:
        if store.scalar("select 1 from strategies where id = ?", (strategy.id,)):
            return False
        db["strategies"].insert(_row(strategy, embedding), pk="id")
        db["strategy_versions"].insert(_version_row(strategy, editor, "created"), pk=("strategy_id", "version"))
    return True


def merge(store: Store, duplicate_id: str, target_id: str, similarity: float) -> None:
    """Mark ``duplicate_id`` merged into ``target_id``; the target gains its source scenarios."""
    with store.transaction():
        dup, target = get(store, duplicate_id), get(store, target_id)
        if dup.status == "merged":
            return
        dup.status, dup.merged_into, dup.reason = "merged", target_id, f"near-duplicate of {target_id} (cosine {similarity:.3f})"
        dup.version += 1
        sources = list(dict.fromkeys([*target.source_scenarios, *dup.source_scenarios]))
        store.conn.execute(
            "update strategies set status = 'merged', merged_into = ?, reason = ?, version = ?, updated_at = ? where id = ?",
            (target_id, dup.reason, dup.version, utcnow(), duplicate_id),
        )
        store.db["strategy_versions"].insert(_version_row(dup, "merge", dup.reason), pk=("strategy_id", "version"))
        store.conn.execute("update strategies set source_scenarios = ?, updated_at = ? where id = ?",
                           (json.dumps(sources), utcnow(), target_id))  # fmt: skip


def get(store: Store, strategy_id: str) -> Strategy:
    rows = store.query("select * from strategies where id = ?", (strategy_id,))
    if not rows:
        raise UserError(f"{store.path}: no strategy {strategy_id!r}")
    return Strategy.from_row(rows[0])


def all_strategies(store: Store, statuses: Sequence[str] = STATUSES) -> list[Strategy]:
    marks = ",".join("?" * len(statuses))
    rows = store.query(f"select * from strategies where status in ({marks}) order by created_at, id", list(statuses))
    return [Strategy.from_row(r) for r in rows]


def library(store: Store, *, before: tuple[str, int] | None = None) -> tuple[list[Strategy], np.ndarray]:
    """Accepted and edited strategies with their embeddings (rows of a matrix).

    ``before=(learn_id, round)`` leaves out what that learn run added in that round or later,
    so a resumed round sees the library exactly as the round first saw it."""
    from symkd.embeddings import from_blob

    sql = "select * from strategies where status in ('accepted', 'edited')"
    params: list[Any] = []
    if before is not None:
        sql += " and not (coalesce(learn_id, '') = ? and coalesce(round, 0) >= ?)"
        params = [before[0], before[1]]
    rows = store.query(sql + " order by created_at, id", params)
    vectors = [from_blob(r["embedding"]) for r in rows]
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing:
        from symkd.embeddings import encode

        for i, v in zip(missing, encode([rows[i]["text"] for i in missing])):
            vectors[i] = v
    matrix = np.stack(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)
    return [Strategy.from_row(r) for r in rows], matrix


def versions(store: Store, strategy_id: str) -> list[dict[str, Any]]:
    rows = store.query("select * from strategy_versions where strategy_id = ? order by version", (strategy_id,))
    for row in rows:
        row["tags"] = json.loads(row["tags"])
    return rows


def edit(store: Store, strategy_id: str, *, text: str | None = None, tags: Sequence[str] | None = None,
         status: str | None = None, editor: str = "human", note: str = "") -> bool:  # fmt: skip
    """Change a strategy's text, tags or status as a new version; False when nothing changed.

    A new text without a new status makes the strategy ``edited`` (it joins the library)."""
    from symkd.embeddings import encode, to_blob

    current = get(store, strategy_id)
    new_text = current.text if text is None else text.strip()
    new_tags = current.tags if tags is None else [t.strip() for t in tags if t.strip()]
    new_status = status or ("edited" if new_text != current.text and current.status != "rejected" else current.status)
    if new_status not in STATUSES:
        raise UserError(f"strategy {strategy_id}: status {new_status!r} is not one of {', '.join(STATUSES)}")
    if not new_text:
        raise UserError(f"strategy {strategy_id}: empty text")
    if (new_text, new_tags, new_status) == (current.text, current.tags, current.status):
        return False
    current.text, current.tags, current.status, current.version = new_text, new_tags, new_status, current.version + 1
    blob = to_blob(encode([new_text])[0])
    with store.transaction() as db:
        store.conn.execute(
            "update strategies set text = ?, tags = ?, status = ?, version = ?, embedding = ?, updated_at = ? where id = ?",
            (new_text, json.dumps(new_tags), new_status, current.version, blob, utcnow(), strategy_id),
        )
        db["strategy_versions"].insert(_version_row(current, editor, note), pk=("strategy_id", "version"))
    return True
