"""Databases that are not symkd's, newer than this symkd, or read-only, through the real CLI.

A foreign SQLite file is refused byte for byte unchanged (journal mode included) by every
command unless ``--adopt`` is given; read-only commands open files read-only, work where the
file or its folder cannot be written, and refuse a newer schema instead of reading it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.procs import generate_args, one_error_line, run, write_prompts

READ_ONLY = [("runs",), ("stats", "-q"), ("export", "--format", "tsv", "-q")]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _side_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name != path.name and p.name.startswith(path.name)]


def _notes_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("create table notes (id integer primary key, body text)")
    conn.executemany("insert into notes (body) values (?)", [("buy milk",), ("call mum",)])
    conn.commit()
    conn.close()
    return path


def _read_only_args(command: tuple[str, ...], db: Path, tmp_path: Path) -> list[str]:
    args = [command[0], "--db", str(db), *command[1:]]
    if command[0] == "export":
        args += ["--out", str(tmp_path / "kg.tsv")]
    return args


def _symkd_db(tmp_path: Path, server) -> Path:
    db = tmp_path / "run.db"
    proc = run(*generate_args(server.base_url, write_prompts(tmp_path / "p.jsonl", 3), db))
    assert proc.returncode == 0, proc.stderr
    return db


def test_a_foreign_database_is_refused_unchanged_by_every_command(tmp_path, fake_openai):
    db = _notes_db(tmp_path / "notes.db")
    before = _digest(db)
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    commands = [generate_args(fake_openai.base_url, prompts, db)]
    commands += [_read_only_args(c, db, tmp_path) for c in READ_ONLY]
    for args in commands:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "not a symkd database (it holds tables notes)" in one_error_line(proc)
        assert _digest(db) == before, f"{args[0]} changed the file"
        assert _side_files(db) == [], f"{args[0]} left {_side_files(db)}"
    assert fake_openai.stats()["total"] == 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_adopt_adds_symkd_tables_and_keeps_the_users_rows(tmp_path, fake_openai):
    db = _notes_db(tmp_path / "notes.db")
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    proc = run(*generate_args(fake_openai.base_url, prompts, db, "--adopt", "--json"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["done"] == 3
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from notes").fetchone()[0] == 2
    assert conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0] == 3
    conn.close()
    assert run("runs", "--db", str(db)).returncode == 0  # now symkd's: read-only commands accept it


def test_a_newer_schema_is_refused_by_read_only_commands_too(tmp_path, fake_openai):
    db = _symkd_db(tmp_path, fake_openai)
    conn = sqlite3.connect(db)
    conn.execute("update meta set value = '999' where key = 'schema_version'")
    conn.commit()
    conn.close()
    before = _digest(db)
    for command in READ_ONLY:
        proc = run(*_read_only_args(command, db, tmp_path))
        assert proc.returncode == 2, (command, proc.stderr)
        assert "schema version 999 is newer than this symkd" in one_error_line(proc)
    assert _digest(db) == before


def _lock_folder(folder: Path) -> bool:
    """Make ``folder`` read-only for everyone (chattr +i for root); False when impossible here."""
    folder.chmod(0o555)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        folder.chmod(0o755)
        return False
    return True


def _unlock_folder(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)


@pytest.mark.parametrize("where", ["file", "folder"])
def test_read_only_commands_work_on_a_read_only_database(tmp_path, fake_openai, where):
    db = _symkd_db(tmp_path, fake_openai)
    if where == "folder":
        (tmp_path / "ro").mkdir()
        db = db.rename(tmp_path / "ro" / "run.db")  # a clean close left no -wal/-shm beside it
    db.chmod(0o444)
    before = _digest(db)
    if where == "folder" and not _lock_folder(db.parent):
        pytest.skip("cannot make a read-only folder here")
    try:
        for command in READ_ONLY:
            proc = run(*_read_only_args(command, db, tmp_path))
            assert proc.returncode == 0, (command, proc.stderr)
        [listed] = json.loads(run("runs", "--db", str(db), "--json").stdout)
        assert (listed["items"], listed["ok"], listed["status"]) == (3, 3, "done")
    finally:
        if where == "folder":
            _unlock_folder(db.parent)
    assert _digest(db) == before
    if where == "folder":
        assert _side_files(db) == []
    else:  # a WAL reader may leave an empty -wal (and the -shm index) beside a file it can read
        assert all(p.name.endswith("-shm") or p.stat().st_size == 0 for p in _side_files(db))
