"""A database written before the commonsense tables were the commonsense pipeline's own (core
schema v5 made them, no ``schema_version:commonsense``) opens, is read, and upgrades in place.

The fixture ``store_v5_release.sql`` is a real store of that release (``distill commonsense`` on
the embedded teacher, trimmed to a few rows and dumped with ``iterdump``), so its layout is
exactly what that code wrote; ``store_v4_release.sql`` is the schema core migrations v1-v4 made.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from symkd.store import Store
from symkd.store.owners import opened_with_every_store

FIXTURES = Path(__file__).parent / "fixtures"
TABLES = ("runs", "requests", "responses", "run_items", "events", "triples", "critic_scores")


def _load(path: Path, fixture: str) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / fixture).read_text(encoding="utf-8"))
    return path


def _rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"select * from {table} order by rowid").fetchall()


def _layout(path: Path) -> dict[str, object]:
    """Tables and views with their columns and foreign keys, and the index names."""
    with sqlite3.connect(path) as conn:
        names = conn.execute("select name, type from sqlite_master where type in ('table', 'view') "
                             "and name not like 'sqlite_%'").fetchall()  # fmt: skip
        layout: dict[str, object] = {
            name: (kind, [r[1] for r in conn.execute(f"pragma table_xinfo([{name}])")],
                   sorted(r[2:5] for r in conn.execute(f"pragma foreign_key_list([{name}])")))
            for name, kind in names
        }  # fmt: skip
        layout["indexes"] = sorted(r[0] for r in conn.execute("select name from sqlite_master where type = 'index' "
                                                                "and sql is not null"))  # fmt: skip
    return layout


@pytest.fixture
def old_db(tmp_path) -> Path:
    return _load(tmp_path / "old.db", "store_v5_release.sql")


def test_the_commonsense_tables_come_from_the_entry_point_group():
    assert [owner.name for owner in opened_with_every_store()] == ["commonsense"]


def test_an_old_release_store_is_read_without_a_write(old_db):
    before = old_db.read_bytes()
    with Store(old_db, readonly=True) as store:
        assert store.version == 5
        assert store.scalar("select count(*) from kept_triples") >= 1
        assert store.meta("schema_version:commonsense") is None
    assert old_db.read_bytes() == before


def test_an_old_release_store_upgrades_in_place_keeping_rows_and_layout(old_db, tmp_path):
    before = {table: _rows(old_db, table) for table in TABLES}
    layout = _layout(old_db)
    with sqlite3.connect(old_db) as conn:
        sql = dict(conn.execute("select name, sql from sqlite_master where name in ('events', 'triples')").fetchall())
    with Store(old_db) as store:
        assert store.meta("schema_version") == "5"
        assert store.meta("schema_version:commonsense") == "1"
        kept = store.query("select id from kept_triples order by id")
        assert kept, "the old store's kept triples are still kept"
    assert {table: _rows(old_db, table) for table in TABLES} == before
    assert _layout(old_db) == layout  # adopted as it was: nothing rebuilt, nothing added
    with sqlite3.connect(old_db) as conn:
        assert dict(conn.execute("select name, sql from sqlite_master where name in ('events', 'triples')")) == sql
    # a new store gets the same layout from the core and the commonsense migrations
    Store(tmp_path / "new.db").close()
    assert _layout(tmp_path / "new.db") == layout


def test_reopening_an_upgraded_store_writes_nothing(old_db):
    Store(old_db).close()
    with sqlite3.connect(old_db) as conn:
        changes = conn.execute("pragma data_version").fetchone()
    with Store(old_db) as store:
        assert store.conn.total_changes == 0
    with sqlite3.connect(old_db) as conn:
        assert conn.execute("pragma data_version").fetchone() == changes


def test_a_v4_store_gets_its_foreign_keys_and_links_from_the_pipeline_migration(tmp_path):
    path = _load(tmp_path / "v4.db", "store_v4_release.sql")
    with sqlite3.connect(path) as conn:
        conn.execute("insert into runs (id, kind, status) values ('r1', 'generate', 'done')")
        conn.execute("insert into triples (id, head, relation, tail, run_id) values ('t1', 'PersonX naps', 'xAttr', "
                     "'sleepy', 'r1')")  # fmt: skip
        conn.execute("insert into critic_scores (item_table, item_id, critic, critic_version, score, decision) "
                     "values ('triples', 't1', 'rules', '1', 1.0, 'keep')")  # fmt: skip
    with Store(path) as store:
        assert [store.meta("schema_version"), store.meta("schema_version:commonsense")] == ["5", "1"]
        assert store.query("select triple_id, event_id from critic_scores") == [{"triple_id": "t1", "event_id": None}]
        assert [r["id"] for r in store.query("select id from kept_triples")] == ["t1"]
    Store(tmp_path / "new.db").close()
    assert _layout(path) == _layout(tmp_path / "new.db")


def test_a_newer_commonsense_version_is_refused_in_one_line(old_db):
    Store(old_db).close()
    with sqlite3.connect(old_db) as conn:
        conn.execute("update meta set value = '99' where key = 'schema_version:commonsense'")
    with pytest.raises(Exception, match="commonsense tables: version 99 is newer"):
        Store(old_db)
