"""The run store: schema, migrations, transactions, concurrency, browsability."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from symkd.errors import UserError
from symkd.store import Store, schema
from symkd.store.cache import ResponseWriter, answered_keys, get_responses
from symkd.teachers.messages import Completion, Request, Response, Usage


def test_new_store_has_schema_and_wal(db_path):
    with Store(db_path) as store:
        assert store.meta("schema_version") == str(len(schema.MIGRATIONS))
        tables = set(store.db.table_names())
        assert {"meta", "runs", "requests", "responses", "run_items"} <= tables
        assert store.scalar("pragma journal_mode") == "wal"


def test_reopening_does_not_remigrate_and_future_schema_is_refused(db_path):
    Store(db_path).close()
    with Store(db_path) as store:
        store.set_meta("schema_version", "999")
    with pytest.raises(UserError, match="newer than this symkd"):
        Store(db_path)


def test_missing_db_and_folder_and_garbage_file(tmp_path):
    with pytest.raises(UserError, match="no such database"):
        Store(tmp_path / "absent.db", create=False)
    with pytest.raises(UserError, match="does not exist"):
        Store(tmp_path / "nope" / "x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(UserError, match="not a usable SQLite database"):
        Store(junk)


def test_transaction_rolls_back_on_error(db_path):
    with Store(db_path) as store:
        with pytest.raises(RuntimeError):
            with store.transaction() as db:
                db["meta"].insert({"key": "half", "value": "written"})
                raise RuntimeError("boom")
        assert store.meta("half") is None


def test_writer_upserts_and_only_ok_rows_answer(db_path):
    req = Request(id="a", prompt="hi")
    with Store(db_path) as store:
        from symkd.store.cache import request_row

        with store.transaction() as db:
            db["requests"].insert_all([request_row(req, "k1", "x", "m"), request_row(req, "k2", "x", "m")], pk="key")
        writer = ResponseWriter(store, interval=60, size=1000)
        writer.add("k1", Response(error="HTTP 500"))
        writer.add("k2", Response(completions=[Completion(text="yo", finish_reason="stop")], usage=Usage(prompt_tokens=3)))
        writer.flush()
        assert answered_keys(store, ["k1", "k2", "k3"]) == {"k2"}
        writer.add("k1", Response(completions=[Completion(text="second try")]))
        writer.flush()
        assert answered_keys(store, ["k1", "k2"]) == {"k1", "k2"}
        assert store.scalar("select count(*) from responses") == 2
        got = get_responses(store, ["k1", "k2"])
        assert got["k1"].completions[0].text == "second try" and got["k2"].usage.prompt_tokens == 3
        row = store.query("select * from responses where key='k2'")[0]
        assert json.loads(row["completions"])[0]["text"] == "yo"  # JSON column, readable as is


_WRITER = textwrap.dedent(
    """
    import sys
    from symkd.store import Store
    store = Store(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with store.transaction() as db:
            db["meta"].insert({"key": f"{sys.argv[2]}-{i}", "value": "x" * 1000})
    """
)


def test_two_processes_write_one_db_without_locking_errors(db_path):
    Store(db_path).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db_path), name, "300"], stderr=subprocess.PIPE, text=True)
        for name in ("p1", "p2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    conn = sqlite3.connect(db_path)
    assert conn.execute("select count(*) from meta where key like 'p_-%'").fetchone()[0] == 600


def test_foreign_sqlite_is_refused_unless_adopted_and_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("create table notes (body text)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(UserError, match="not a symkd database"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == before
    with Store(path, adopt=True) as store:
        assert store.meta("schema_version") == str(len(schema.MIGRATIONS))
        assert "notes" in store.db.table_names()
    Store(path).close()  # adopted once, symkd's from then on


def test_read_only_store_checks_the_version_and_never_writes(db_path):
    Store(db_path).close()
    with Store(db_path, readonly=True) as store:
        assert store.version == len(schema.MIGRATIONS)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.conn.execute("insert into meta values ('x', 'y')")
    conn = sqlite3.connect(db_path)
    conn.execute("update meta set value = '999' where key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="newer than this symkd"):
        Store(db_path, readonly=True)


def test_store_skips_numpy_yet_numpy_and_pandas_values_get_sqlite_utils_column_types(tmp_path):
    """Opening the store imports neither numpy nor pandas; a table created later from numpy or
    pandas values gets the column types sqlite_utils gives them when it imports them itself."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from symkd.store import Store
        store = Store({str(tmp_path / "run.db")!r})
        skipped = [m for m in ("numpy", "pandas") if m in sys.modules]
        import numpy as np
        store.db["t"].insert({{"f": np.float32(1.5), "i": np.int64(3), "u": np.uint8(1), "s": "x"}})
        types = {{c.name: c.type for c in store.db["t"].columns}}
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            from sqlite_utils.db import COLUMN_TYPE_MAPPING
            types["Timestamp"] = COLUMN_TYPE_MAPPING[pd.Timestamp]
        print(json.dumps([skipped, types]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    skipped, types = json.loads(done.stdout)
    assert skipped == []
    assert {k: types[k] for k in "fius"} == {"f": "REAL", "i": "INTEGER", "u": "INTEGER", "s": "TEXT"}
    assert types.get("Timestamp", "TEXT") == "TEXT"


def test_opened_closes_only_the_store_it_opened(tmp_path):
    from symkd.store.db import opened

    path = tmp_path / "o.db"
    with opened(path) as mine:
        assert mine.scalar("select 1") == 1
    with pytest.raises(sqlite3.ProgrammingError):  # opened on the path: closed on the way out
        mine.conn.execute("select 1")
    with Store(path) as theirs:
        with opened(theirs, readonly=True) as same:
            assert same is theirs
        assert theirs.scalar("select 1") == 1  # the caller's own Store stays open
    with pytest.raises(UserError, match="no such database"):
        with opened(tmp_path / "missing.db", create=False):
            pass
