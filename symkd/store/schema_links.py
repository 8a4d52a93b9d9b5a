"""Core schema v5: ``critic_scores`` rebuilt with a foreign key to the run that scored, and the
helpers (:data:`Column`, :func:`create_sql`, :func:`doc`) the pipelines' tables are declared with.

SQLite cannot add a foreign key to a table that exists, so ``critic_scores`` is rebuilt
(:func:`symkd.store.tables.rebuild_table`: create, copy, drop, rename, inside the migration's
transaction); a database at v4 upgrades in place, every row kept. (Before the commonsense
tables were the commonsense pipeline's own, v5 also rebuilt ``events`` and ``triples``; the
pipeline's migration now does that for a database that has them without foreign keys.)

Each column is declared once below with its type, its description (Datasette shows it) and
where it points. The foreign keys are declared, not enforced: :class:`symkd.store.base.Store`
leaves ``PRAGMA foreign_keys`` off, because provenance may legitimately point outside the file
(triples added through ``add_triples`` or imported from another store keep their ``run_id``;
``head_id`` is the hash of the head text, a stored event only when the head was generated or
seeded here). Such rows stay as they are, readable; ``PRAGMA foreign_key_check`` lists them.

``critic_scores`` says which table its item is in (``item_table``); a pipeline whose critics
score its own rows adds a generated column that holds ``item_id`` when the item is one of its
rows, in its own migration (``triple_id`` and ``event_id``: commonsense; ``trajectory_id``:
agents), so the score links to its item; a later rebuild of ``critic_scores`` must keep them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import Sequence

from symkd.store.owners import TableDoc
from symkd.store.tables import rebuild_table

if TYPE_CHECKING:
    import sqlite_utils

# (column, SQL type, description, link): link is "" or the foreign key "table.column", and for
# a generated column "table.column = expression"
Column = tuple[str, str, str, str]

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
]


def column_sql(column: Column) -> str:
    """One column's definition: type, generated expression, foreign key."""
    name, kind, _, link = column
    target, _, expression = link.partition(" = ")
    line = f"[{name}] {kind}"
    if expression:
        line += f" generated always as ({expression}) virtual"
    if target:
        parent, _, key = target.partition(".")
        line += f" references [{parent}]([{key}])"
    return line


def create_sql(table: str, columns: Sequence[Column], pk: Sequence[str]) -> str:
    """The ``create table`` statement for ``columns`` (foreign keys inline)."""
    lines = [column_sql(column) for column in columns]
    lines.append(f"primary key ({', '.join(f'[{c}]' for c in pk)})")
    return f"create table [{table}] (\n  " + ",\n  ".join(lines) + "\n)"


def add_columns(db: sqlite_utils.Database, table: str, columns: Sequence[Column]) -> None:
    """Add those of ``columns`` that ``table`` lacks (generated ones included: SQLite adds a
    virtual generated column in place, every row kept)."""
    present = {row[1] for row in db.execute(f"pragma table_xinfo([{table}])").fetchall()}
    for column in columns:
        if column[0] not in present:
            db.execute(f"alter table [{table}] add column {column_sql(column)}")


def doc(table: str, description: str, columns: Sequence[Column], **extra) -> TableDoc:  # type: ignore[no-untyped-def]
    return TableDoc(table, description, {name: text for name, _, text, _ in columns}, **extra)


def v5_links(db: sqlite_utils.Database) -> None:
    """A foreign key from each critic score to the run that scored it."""
    rebuild_table(db, "critic_scores", create_sql("critic_scores", CRITIC_SCORES, ["item_table", "item_id", "critic", "critic_version"]))
    db.execute("create index if not exists critic_scores_run on critic_scores(run_id)")


DOCS = [
    doc("critic_scores", "One row per item and critic name+version: score and keep/drop decision.",
        CRITIC_SCORES, facets=("critic", "decision", "item_table")),
]  # fmt: skip
