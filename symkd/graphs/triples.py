"""The generic triple model: (head, relation, tail, attributes), the ``events``/``triples`` tables,
ids, normalisation, reads and writes. Which relations exist is a pipeline's
:class:`~symkd.graphs.relations.RelationSchema`, not this module's.

Ids are content hashes of normalised text, so adding the same event or triple twice is a
no-op (insert-or-ignore) and a resumed pipeline never duplicates knowledge.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from symkd.store.db import Store, utcnow

_SPACE = re.compile(r"\s+")
#: the table curated triples live in (the ``item_table`` of critics that score triples)
TRIPLE_TABLE = "triples"
#: the tail that says "the relation does not apply to this head"
NONE_TAIL = "none"


@dataclass(frozen=True)
class Triple:
    """One curated triple; ``attributes`` holds the other columns (provenance, round, ...)."""

    head: str
    relation: str
    tail: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return triple_id(self.head, self.relation, self.tail)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Triple":
        rest = {k: v for k, v in row.items() if k not in ("head", "relation", "tail")}
        return cls(row["head"], row["relation"], row["tail"], rest)


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, strip surrounding punctuation (for ids and dedupe)."""
    return _SPACE.sub(" ", text.strip().lower()).strip(" .,;:!?\"'")


def is_none(tail: str) -> bool:
    """Whether a tail is the "none" answer (the relation does not apply)."""
    return normalize(tail or "") == NONE_TAIL


def event_id(text: str) -> str:
    return hashlib.sha1(normalize(text).encode("utf-8")).hexdigest()[:16]


def triple_id(head: str, relation: str, tail: str) -> str:
    key = "\t".join([normalize(head), relation, normalize(tail)])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def add_events(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Insert events (``text`` required; ``id`` derived); returns how many were new."""
    now = utcnow()
    prepared = []
    for row in rows:
        row = {"status": "kept", "kind": "event", "created_at": now, **row}
        row.setdefault("id", event_id(row["text"]))
        prepared.append(row)
    with store.transaction() as db:
        before = db["events"].count
        db["events"].insert_all(prepared, pk="id", ignore=True, alter=False)
        return db["events"].count - before


def add_triples(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Insert triples (``head``, ``relation``, ``tail`` required); returns how many were new."""
    now = utcnow()
    prepared = []
    for row in rows:
        row = {"source": "teacher", "round": 0, "created_at": now, **row}
        row.setdefault("id", triple_id(row["head"], row["relation"], row["tail"]))
        row.setdefault("head_id", event_id(row["head"]))
        prepared.append(row)
    with store.transaction() as db:
        before = db["triples"].count
        db["triples"].insert_all(prepared, pk="id", ignore=True, alter=False, batch_size=2000)
        return db["triples"].count - before


def curated_sql(
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    relations: Sequence[str] = (),
    rounds: Sequence[int] = (),
) -> tuple[str, list[Any]]:
    """The SQL (and parameters) behind :func:`curated_triples`, for callers that stream rows."""
    clauses: list[str] = []
    params: list[Any] = []
    for name in critics:
        cond = "s.decision = 'keep'" if min_score is None else "s.score >= ?"
        clauses.append(
            "exists (select 1 from critic_scores s where s.item_table = 'triples' and s.item_id = t.id "
            f"and s.critic = ? and {cond} and s.critic_version = (select critic_version from critic_scores "
            "where critic = ? and item_table = 'triples' order by version_key(critic_version) desc limit 1))"
        )
        params += [name, *([] if min_score is None else [min_score]), name]
    if relations:
        clauses.append(f"t.relation in ({','.join('?' * len(relations))})")
        params += list(relations)
    if rounds:
        clauses.append(f"t.round in ({','.join('?' * len(rounds))})")
        params += list(rounds)
    where = f"where {' and '.join(clauses)}" if clauses else ""
    return f"select t.* from triples t {where} order by t.rowid", params


def curated_triples(
    store: Store,
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    relations: Sequence[str] = (),
    rounds: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Triples kept by every named critic (latest version of each), optionally filtered.

    ``min_score`` applies to each named critic's score. A triple a named critic has not
    scored yet is left out. With no critics named, every triple is returned.
    """
    return store.query(*curated_sql(critics=critics, min_score=min_score, relations=relations, rounds=rounds))
