"""Core schema v5: the commonsense tables rebuilt with foreign keys, and the ``kept_triples`` view.

SQLite cannot add a foreign key to a table that exists, so ``events``, ``triples`` and
``critic_scores`` are rebuilt (:func:`symkd.store.tables.rebuild_table`: create, copy, drop,
rename, inside the migration's transaction); a database at v4 upgrades in place, every row kept.

Each column is declared once below with its type, its description (Datasette shows it) and
where it points. The foreign keys are declared, not enforced: :class:`symkd.store.db.Store`
leaves ``PRAGMA foreign_keys`` off, because provenance may legitimately point outside the file
(triples added through ``add_triples`` or imported from another store keep their ``run_id``;
``head_id`` is the hash of the head text, a stored event only when the head was generated or
seeded here). Such rows stay as they are, readable; ``PRAGMA foreign_key_check`` lists them.

``critic_scores`` says which table its item is in (``item_table``); the generated columns
``triple_id`` and ``event_id`` hold ``item_id`` when the item is a triple or an event, so the
score links to its item. (A pipeline whose critics score its own rows adds such a column in its
own migration, e.g. ``trajectory_id``; a later rebuild of ``critic_scores`` must keep them.)
"""

from __future__ import annotations

from typing import Sequence

import sqlite_utils

from symkd.store.datasette import TableDoc
from symkd.store.tables import create_view, rebuild_table

# (column, SQL type, description, link): link is "" or the foreign key "table.column", and for
# a generated column "table.column = expression"
Column = tuple[str, str, str, str]

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
CRITIC_SCORES: list[Column] = [
    ("item_table", "TEXT", "the table of the item scored: triples | events | a pipeline's table (trajectories)", ""),
    ("item_id", "TEXT", "the item's id in that table", ""),
    ("critic", "TEXT", "critic name (rules, dedupe, classifier, judge, verifier, ...)", ""),
    ("critic_version", "TEXT", "critic version: a new version scores again", ""),
    ("score", "FLOAT", "higher = better", ""),
    ("decision", "TEXT", "keep | drop", ""),
    ("threshold", "FLOAT", "the critic's threshold when it scored", ""),
    ("details", "TEXT", "JSON: the critic's reasons (failed rules, nearest duplicate, judge answer, ...)", ""),
    ("run_id", "TEXT", "the run that scored it (kind critic): the critic's settings and the scope", "runs.id"),
    ("created_at", "TEXT", "UTC time it was scored (ISO 8601)", ""),
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


def create_sql(table: str, columns: Sequence[Column], pk: Sequence[str]) -> str:
    """The ``create table`` statement for ``columns`` (foreign keys inline)."""
    lines = []
    for name, kind, _, link in columns:
        target, _, expression = link.partition(" = ")
        line = f"[{name}] {kind}"
        if expression:
            line += f" generated always as ({expression}) virtual"
        if target:
            parent, _, key = target.partition(".")
            line += f" references [{parent}]([{key}])"
        lines.append(line)
    lines.append(f"primary key ({', '.join(f'[{c}]' for c in pk)})")
    return f"create table [{table}] (\n  " + ",\n  ".join(lines) + "\n)"


def doc(table: str, description: str, columns: Sequence[Column], **extra) -> TableDoc:  # type: ignore[no-untyped-def]
    return TableDoc(table, description, {name: text for name, _, text, _ in columns}, **extra)


def v5_links(db: sqlite_utils.Database) -> None:
    """Foreign keys from events, triples and critic scores to their runs, responses and items."""
    rebuild_table(db, "events", create_sql("events", EVENTS, ["id"]))
    rebuild_table(db, "triples", create_sql("triples", TRIPLES, ["id"]))
    rebuild_table(db, "critic_scores", create_sql("critic_scores", CRITIC_SCORES, ["item_table", "item_id", "critic", "critic_version"]))
    db.execute("create index if not exists events_run on events(run_id)")
    db.execute("create index if not exists triples_run on triples(run_id)")
    db.execute("create index if not exists triples_head_id on triples(head_id)")
    db.execute("create index if not exists critic_scores_run on critic_scores(run_id)")
    create_view(db, "kept_triples", KEPT_TRIPLES)


DOCS = [
    doc("events", "Heads: events (PersonX ...) and entities, generated, seeded or extracted, kept or dropped.",
        EVENTS, label="text", facets=("kind", "source", "status")),
    doc("triples", "Curated commonsense triples (head, relation, tail) with provenance.", TRIPLES,
        label="tail", facets=("relation", "source")),
    doc("critic_scores", "One row per item and critic name+version: score and keep/drop decision.",
        CRITIC_SCORES, facets=("critic", "decision", "item_table")),
    KEPT_TRIPLES_DOC,
]  # fmt: skip
