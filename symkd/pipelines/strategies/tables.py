"""The strategies pipeline's own tables (``ensure_tables(store, "strategies", MIGRATIONS)``).

- ``strategy_scenarios``: the scenarios a learn run works on (dataset tasks and the teacher's
  synthetic ones), with the failed scenario a synthetic one imitates.
- ``strategies``: every candidate the teacher proposed, whatever became of it: the current
  text and tags, source scenarios, MiniLM embedding (float32 BLOB), acceptance evidence
  (JSON), provenance (learn id, teacher, template id+version, round, response key) and
  status ``accepted | rejected | merged | edited``; ``merged_into`` points a near-duplicate
  at the strategy that absorbed it (its evidence stays on its own row).
- ``strategy_versions``: every text a strategy has had (version 1 is the teacher's), so an
  edit never loses the original.
- ``strategy_rounds``: per learn run and round, the counts and the student's score.
- ``accepted_strategies`` (view, v2): the library (accepted or edited strategies).

v2 rebuilds ``strategies`` and ``strategy_scenarios`` (rows kept) with foreign keys to the
``responses`` they were parsed from, declared for Datasette, not enforced (see
:mod:`symkd.store.schema_links`). Every table is described in :data:`DOCS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from symkd.store.db import Store
from symkd.store.datasette import TableDoc, register_tables
from symkd.store.tables import check_owner_version, create_view, ensure_tables, rebuild_table

if TYPE_CHECKING:
    import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """create table if not exists strategy_scenarios (
             learn_id text not null, id text not null, source text not null, question text not null,
             solution text not null default '', answer text not null, parent text, round integer not null default 0,
             response_key text, created_at text not null, primary key (learn_id, id))"""
    )
    db.execute(
        """create table if not exists strategies (
             id text primary key, text text not null, tags text not null default '[]',
             source_scenarios text not null default '[]', embedding blob, evidence text not null default '{}',
             status text not null check (status in ('accepted', 'rejected', 'merged', 'edited')),
             reason text not null default '', merged_into text references strategies(id),
             version integer not null default 1, learn_id text, round integer, teacher text,
             template_id text, template_version text, response_key text,
             created_at text not null, updated_at text not null)"""
    )
    db.execute("create index if not exists strategies_status on strategies(status)")
    db.execute(
        """create table if not exists strategy_versions (
             strategy_id text not null references strategies(id), version integer not null,
             text text not null, tags text not null, status text not null, editor text not null,
             note text not null default '', created_at text not null,
             primary key (strategy_id, version))"""
    )
    db.execute(
        """create table if not exists strategy_rounds (
             learn_id text not null, round integer not null, scenarios integer not null,
             failed integer not null, accuracy real not null, proposals integer not null,
             critic_rejected integer not null, accepted integer not null, rejected integer not null,
             merged integer not null, synthetic integer not null, library_size integer not null,
             config text not null, finished_at text not null, primary key (learn_id, round))"""
    )


#: statuses that make up the library the student retrieves from
LIBRARY_STATUSES = ("accepted", "edited")

SCENARIOS_V2 = """create table strategy_scenarios (
     learn_id text not null, id text not null, source text not null, question text not null,
     solution text not null default '', answer text not null, parent text, round integer not null default 0,
     response_key text references responses(key), created_at text not null, primary key (learn_id, id),
     foreign key (learn_id, parent) references strategy_scenarios(learn_id, id))"""
STRATEGIES_V2 = """create table strategies (
     id text primary key, text text not null, tags text not null default '[]',
     source_scenarios text not null default '[]', embedding blob, evidence text not null default '{}',
     status text not null check (status in ('accepted', 'rejected', 'merged', 'edited')),
     reason text not null default '', merged_into text references strategies(id),
     version integer not null default 1, learn_id text, round integer, teacher text,
     template_id text, template_version text, response_key text references responses(key),
     created_at text not null, updated_at text not null)"""
ACCEPTED_STRATEGIES = f"""
select id, text, tags, status, version, learn_id, round, teacher, template_id, template_version, response_key,
       evidence, source_scenarios, created_at, updated_at
from strategies where status in {LIBRARY_STATUSES!r}
"""


def _v2(db: sqlite_utils.Database) -> None:
    """Foreign keys from strategies and scenarios to the teacher responses they were parsed from
    (and from a synthetic scenario to the one it imitates), by the table rebuild (rows kept);
    the ``accepted_strategies`` view."""
    rebuild_table(db, "strategy_scenarios", SCENARIOS_V2)
    rebuild_table(db, "strategies", STRATEGIES_V2)
    create_view(db, "accepted_strategies", ACCEPTED_STRATEGIES)


MIGRATIONS = [_v1, _v2]
_WHEN = "UTC time (ISO 8601)"
_ORIGIN = {"learn_id": "the learn run (hash of teacher, scorer, data and settings)", "round": "its round",
           "teacher": "teacher spec", "template_id": "prompt template id", "template_version": "prompt template version",
           "response_key": "the teacher response it was parsed from"}  # fmt: skip
STRATEGY_COLUMNS = {
    "id": "strategy id", "text": "the current text", "tags": "JSON list of tags",
    "source_scenarios": "JSON list of the scenario ids it came from", "embedding": "MiniLM embedding (float32 BLOB)",
    "evidence": "JSON: acceptance evidence", "status": "accepted | rejected | merged | edited",
    "reason": "why rejected or merged", "merged_into": "the strategy that absorbed this near-duplicate",
    "version": "current version (strategy_versions)", **_ORIGIN, "created_at": _WHEN, "updated_at": _WHEN,
}  # fmt: skip
DOCS = [
    TableDoc("strategies", "Every strategy the teacher proposed, whatever became of it.", STRATEGY_COLUMNS,
             label="text", facets=("status",)),
    TableDoc("accepted_strategies", "View: the library the student retrieves from (accepted or edited strategies).",
             {k: v for k, v in STRATEGY_COLUMNS.items() if k not in ("embedding", "reason", "merged_into")}, facets=("status",)),
    TableDoc("strategy_scenarios", "The scenarios a learn run works on: dataset tasks and the teacher's synthetic ones.", {
        "learn_id": _ORIGIN["learn_id"], "id": "scenario id", "source": "dataset or synthetic", "question": "the task",
        "solution": "worked solution", "answer": "reference answer", "parent": "the failed scenario a synthetic one imitates",
        "round": "round it was added", "response_key": _ORIGIN["response_key"], "created_at": _WHEN}, label="question"),
    TableDoc("strategy_versions", "Every text a strategy has had (version 1 is the teacher's).", {
        "strategy_id": "the strategy", "version": "version number", "text": "text of that version", "tags": "JSON list",
        "status": "status then", "editor": "who wrote it (teacher or a person)", "note": "edit note", "created_at": _WHEN}),
    TableDoc("strategy_rounds", "Per learn run and round: counts and the student's score.", {
        "learn_id": _ORIGIN["learn_id"], "round": "round", "scenarios": "scenarios in the pool", "failed": "scenarios failed",
        "accuracy": "the student's accuracy", "proposals": "strategies proposed", "critic_rejected": "rejected by the critic",
        "accepted": "accepted", "rejected": "rejected", "merged": "merged into another", "synthetic": "synthetic scenarios added",
        "library_size": "library size after the round", "config": "JSON: settings", "finished_at": _WHEN}),
]  # fmt: skip
register_tables("strategies", MIGRATIONS, DOCS)


def ensure(store: Store) -> None:
    ensure_tables(store, "strategies", MIGRATIONS)


def check_version(store: Store) -> None:
    """Refuse a library written by a newer symkd (its tables may mean something else)."""
    check_owner_version(store, "strategies", MIGRATIONS)


def has_tables(store: Store) -> bool:
    return store.scalar("select count(*) from sqlite_master where type = 'table' and name = 'strategies'") == 1
