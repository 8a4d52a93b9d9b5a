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
"""

from __future__ import annotations

import sqlite_utils

from symkd.store.db import Store
from symkd.store.tables import check_owner_version, ensure_tables


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


MIGRATIONS = [_v1]

#: statuses that make up the library the student retrieves from
LIBRARY_STATUSES = ("accepted", "edited")


def ensure(store: Store) -> None:
    ensure_tables(store, "strategies", MIGRATIONS)


def check_version(store: Store) -> None:
    """Refuse a library written by a newer symkd (its tables may mean something else)."""
    check_owner_version(store, "strategies", MIGRATIONS)


def has_tables(store: Store) -> bool:
    return store.scalar("select count(*) from sqlite_master where type = 'table' and name = 'strategies'") == 1
