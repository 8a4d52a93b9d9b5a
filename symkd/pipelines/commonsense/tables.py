"""The commonsense pipeline's own tables (``meta.schema_version:commonsense``).

* ``events``: heads (events ``PersonX ...`` and entities), generated, seeded or extracted, kept or
  dropped, with provenance (run, template id+version, response key).
* ``triples``: curated (head, relation, tail) triples with the same provenance.
* ``critic_scores`` (a core table) gets ``triple_id`` and ``event_id``: generated columns that
  hold ``item_id`` when the item scored is a triple or an event, so a score links to its item.
* ``kept_triples``: the view of triples some critic scored and none dropped.

The core reads these tables (graphs, critics, students), so the pipeline names :data:`OWNER` in
the ``symkd.tables`` entry-point group: every store opened for writing gets them, and the core
never names the pipeline (see :mod:`symkd.store.owners`).

Before they were the pipeline's, core migrations v2 (create) and v5 (foreign keys) made them.
Migration v1 takes such a database over in place: tables that exist are kept as they are (those
without foreign keys, core v2-v4, are rebuilt with them, every row kept), what is missing is
added, and the version is recorded. Never edit a released migration: add one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from symkd.store.owners import TableDoc, register_tables
from symkd.store.schema_links import Column, add_columns, create_sql, doc
from symkd.store.tables import create_view, rebuild_table

if TYPE_CHECKING:
    import sqlite_utils

EVENTS: list[Column] = [
    ("id", "TEXT", "sha1 of the normalised text, 16 hex chars", ""),
    ("text", "TEXT", "the event (PersonX ...) or entity", ""),
    ("kind", "TEXT", "event | entity", ""),
    ("source", "TEXT", "seed | generated | extracted | user", ""),
    ("run_id", "TEXT", "the run that generated it (null for seeds)", "runs.id"),
    ("response_key", "TEXT", "the teacher response it was parsed from (null for seeds)", "responses.key"),
    ("template_id", "TEXT", "prompt template id", ""),
    ("template_version", "TEXT", "prompt template version", ""),
    ("logprob_sum", "FLOAT", "sum of the token log-probabilities of its completion, when known", ""),
    ("status", "TEXT", "kept | dropped", ""),
    ("reason", "TEXT", "why dropped: incomplete, no-personx, characters, short, duplicate, seed-copy, "
                       "constraint, low-logprob, surplus", ""),  # fmt: skip
    ("created_at", "TEXT", "UTC time it was stored (ISO 8601)", ""),
]
TRIPLES: list[Column] = [
    ("id", "TEXT", "sha1 of the normalised head, relation and tail, 16 hex chars", ""),
    ("head", "TEXT", "the head event or entity", ""),
    ("relation", "TEXT", "ATOMIC2020 relation (xNeed, xWant, ObjectUse, ...)", ""),
    ("tail", "TEXT", 'the inference; "none" when the relation does not apply to the head', ""),
    ("head_id", "TEXT", "sha1 of the normalised head: the events row when the head is a stored event", "events.id"),
    ("source", "TEXT", "teacher | applicability | human | student", ""),
    ("round", "INTEGER", "0 = teacher; k = the k-th self-imitation round", ""),
    ("run_id", "TEXT", "the run that generated it", "runs.id"),
    ("response_key", "TEXT", "the response it was parsed from", "responses.key"),
    ("template_id", "TEXT", "prompt template id", ""),
    ("template_version", "TEXT", "prompt template version", ""),
    ("sample", "INTEGER", "which completion of the response", ""),
    ("logprob_sum", "FLOAT", "sum of the token log-probabilities of the tail, when known", ""),
    ("created_at", "TEXT", "UTC time it was stored (ISO 8601)", ""),
]
#: the columns this pipeline adds to the core ``critic_scores`` table
CRITIC_SCORES_LINKS: list[Column] = [
    ("triple_id", "TEXT", "item_id when the item is a triple (generated)", "triples.id = case when item_table = 'triples' then item_id end"),
    ("event_id", "TEXT", "item_id when the item is an event (generated)", "events.id = case when item_table = 'events' then item_id end"),
]

KEPT_TRIPLES = """
select t.id, t.head, t.relation, t.tail, t.source, t.round, t.run_id, t.response_key,
       count(*) as critics, min(s.score) as min_score,
       json_group_array(json_object('critic', s.critic, 'version', s.critic_version, 'score', s.score)) as scores
from triples t join critic_scores s on s.item_table = 'triples' and s.item_id = t.id
group by t.id
having sum(s.decision = 'drop') = 0
"""
KEPT_TRIPLES_DOC = TableDoc(
    "kept_triples",
    "View: triples that at least one critic scored and no critic dropped, with their scores.",
    {**{name: text for name, _, text, _ in TRIPLES if f"t.{name}," in KEPT_TRIPLES},
     "critics": "how many critic scores it has (name+version)", "min_score": "its lowest score",
     "scores": "JSON list of {critic, version, score}"},  # fmt: skip
    facets=("relation",),
)


def _table(db: sqlite_utils.Database, name: str, columns: list[Column]) -> None:
    """Create ``name``, or give a legacy one (no foreign keys) its foreign keys, rows kept."""
    sql = create_sql(name, columns, ["id"])
    if not db[name].exists():
        db.execute(sql)
    elif not db.execute(f"pragma foreign_key_list([{name}])").fetchall():
        rebuild_table(db, name, sql)


def _v1(db: sqlite_utils.Database) -> None:
    """Events, triples, the critic-score links and ``kept_triples`` (or a legacy layout adopted)."""
    _table(db, "events", EVENTS)
    _table(db, "triples", TRIPLES)
    db["triples"].create_index(["head", "relation"], if_not_exists=True)
    db["triples"].create_index(["relation"], if_not_exists=True)
    db.execute("create index if not exists events_run on events(run_id)")
    db.execute("create index if not exists triples_run on triples(run_id)")
    db.execute("create index if not exists triples_head_id on triples(head_id)")
    add_columns(db, "critic_scores", CRITIC_SCORES_LINKS)
    create_view(db, "kept_triples", KEPT_TRIPLES)


MIGRATIONS = [_v1]

DOCS = [
    doc("events", "Heads: events (PersonX ...) and entities, generated, seeded or extracted, kept or dropped.",
        EVENTS, label="text", facets=("kind", "source", "status")),
    doc("triples", "Curated commonsense triples (head, relation, tail) with provenance.", TRIPLES,
        label="tail", facets=("relation", "source")),
    doc("critic_scores", "", CRITIC_SCORES_LINKS),
    KEPT_TRIPLES_DOC,
]  # fmt: skip

OWNER = register_tables("commonsense", MIGRATIONS, DOCS)
