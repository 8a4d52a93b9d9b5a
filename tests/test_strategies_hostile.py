"""Strategy libraries holding whatever a model wrote, and library files that are too big,
too new or read-only: exact round trips, safe printing, one-line refusals, nothing touched.

Run through the real ``symkd strategies`` command in subprocesses (no model: the strategies
are inserted as a learn run would, without embeddings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from symkd.pipelines.strategies.importer import MAX_FILE_BYTES
from symkd.pipelines.strategies.library import Strategy, insert, open_library
from tests.procs import one_error_line, run

pytestmark = pytest.mark.slow

HOSTILE = {
    "crlf": "When a line ends in CRLF\r\nor a lone CR\r keep both.",
    "separators": "Line\u2028separator, paragraph\u2029separator, NEL\x85, VT\x0b and FF\x0c stay.",
    "terminal": "ANSI \x1b[31mred\x1b[0m, OSC \x1b]0;owned\x07, C1 \x9b31m, NUL \x00, DEL \x7f, BOM \ufeff, RLO \u202e.",
    "spaces": "   leading and trailing spaces and a tab\t   ",
    "markdown": "### not a heading\n- status: rejected\n> not a quote\n<!-- hidden --> `code` *b* [l](x) \\u0041 \\ | ~ ! &",
    "blank-lines": "first\n\n\nfourth\n",
}
TAGS = {"crlf": ["a,b", " spaced ", "\x1b[1mbold", "c\\,d"], "terminal": ["\u2028sep", "x"], "markdown": []}
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\ufeff]")


def make_library(path: Path) -> Path:
    store = open_library(path, create=True)
    try:
        for n, (sid, text) in enumerate(HOSTILE.items()):
            status = "rejected" if sid == "blank-lines" else "accepted"
            strategy = Strategy(sid, text, status, TAGS.get(sid, ["arithmetic"]), [f"scenario \x1b[2J{n}"],
                                reason="critic said \u2028 no" if status == "rejected" else "", teacher="fake\x1b]0;t\x07")  # fmt: skip
            assert insert(store, strategy, None, editor="test")
    finally:
        store.close()
    return path


def table(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def state(db: Path) -> list:
    return table(db, "select id, text, tags, status, version, updated_at from strategies order by id") + table(
        db, "select * from strategy_versions order by strategy_id, version")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_timestamp(text: str) -> str:
    return re.sub(r"Exported \S+\.", "Exported X.", text)


@pytest.fixture
def lib(tmp_path) -> Path:
    return make_library(tmp_path / "lib.db")


def test_markdown_export_import_round_trips_hostile_text_exactly(lib, tmp_path):
    before = state(lib)
    md = tmp_path / "lib.md"
    assert run("strategies", "export", "--db", str(lib), "--out", str(md)).returncode == 0
    raw = md.read_bytes()
    assert b"\r" not in raw and not _RAW_CONTROL.search(raw.decode()), "the file holds only printable text"
    imported = run("strategies", "import", str(md), "--db", str(lib))
    assert imported.returncode == 0, imported.stderr
    assert "0 changed, 6 unchanged" in imported.stdout
    assert state(lib) == before, "nothing was marked edited or rewritten"
    again = tmp_path / "again.md"
    run("strategies", "export", "--db", str(lib), "--out", str(again))
    assert without_timestamp(again.read_text()) == without_timestamp(md.read_text())
    md.write_bytes(raw.replace(b"\n", b"\r\n"))  # saved by an editor with Windows line endings
    assert "0 changed" in run("strategies", "import", str(md), "--db", str(lib)).stdout
    assert state(lib) == before


def test_an_edit_changes_that_strategy_only(lib, tmp_path):
    md = tmp_path / "lib.md"
    run("strategies", "export", "--db", str(lib), "--out", str(md))
    text = md.read_text()
    assert "> fourth" in text
    md.write_text(text.replace("> fourth", "> fourth, edited by a person", 1))
    assert "1 changed, 5 unchanged" in run("strategies", "import", str(md), "--db", str(lib)).stdout
    texts = dict(table(lib, "select id, text from strategies"))
    assert texts["blank-lines"] == "first\n\n\nfourth, edited by a person"
    assert {k: v for k, v in texts.items() if k != "blank-lines"} == {k: v for k, v in HOSTILE.items() if k != "blank-lines"}
    tags = json.loads(table(lib, "select tags from strategies where id = 'crlf'")[0][0])
    assert tags == TAGS["crlf"], "commas and backslashes inside tags survive"


def test_json_export_is_valid_printable_and_round_trips(lib, tmp_path):
    shown = run("strategies", "show", "--db", str(lib), "--format", "json")
    assert shown.returncode == 0 and not _RAW_CONTROL.search(shown.stdout)
    data = json.loads(shown.stdout)
    assert {s["id"]: s["text"] for s in data["strategies"]} == HOSTILE
    out = tmp_path / "lib.json"
    run("strategies", "export", "--db", str(lib), "--format", "json", "--out", str(out))
    before = state(lib)
    assert "0 changed" in run("strategies", "import", str(out), "--db", str(lib)).stdout
    assert state(lib) == before


def test_show_prints_no_control_characters(lib):
    shown = run("strategies", "show", "--db", str(lib))
    assert shown.returncode == 0, shown.stderr
    assert not _RAW_CONTROL.search(shown.stdout), "a model's escape sequences reach the terminal as text"
    assert "\\u001b[31mred" in shown.stdout.replace("\\[", "[")


def test_stdout_target_writes_the_library_there(lib):
    out = run("strategies", "export", "--db", str(lib), "--out", "-")
    assert out.returncode == 0 and out.stdout.startswith("# symkd strategy library") and out.stderr.strip() == "-> -"


def _refused(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert expected in one_error_line(proc)


def test_a_newer_strategies_table_version_is_refused_and_left_untouched(lib, tmp_path):
    conn = sqlite3.connect(lib)
    conn.execute("update meta set value = '99' where key = 'schema_version:strategies'")
    conn.commit()
    conn.execute("pragma journal_mode = delete")  # a plain file: any write would show
    conn.close()
    md = tmp_path / "lib.md"
    md.write_text("# symkd strategy library\n\n<!-- symkd-strategies v1 -->\n\n### crlf\n\n> x\n")
    before = digest(lib)
    for args in (["show"], ["export", "--out", str(tmp_path / "o.md")], ["import", str(md)]):
        _refused(run("strategies", *args, "--db", str(lib)), "strategies tables: version 99 is newer")
    assert digest(lib) == before and sorted(p.name for p in lib.parent.iterdir() if p.name.startswith("lib.db")) == ["lib.db"]
    assert not (tmp_path / "o.md").exists()


@contextlib.contextmanager
def read_only_file(path: Path):
    """A file nobody may write: 0444, and immutable for root (who ignores the mode)."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        if os.geteuid() == 0 and not immutable:
            pytest.skip("root without chattr: cannot make a read-only file")
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o644)


def test_show_and_export_work_on_a_read_only_database(lib, tmp_path):
    conn = sqlite3.connect(lib)
    conn.execute("pragma journal_mode = delete")
    conn.close()
    before = digest(lib)
    with read_only_file(lib):
        shown = run("strategies", "show", "--db", str(lib))
        assert shown.returncode == 0 and "### crlf" in shown.stdout, shown.stderr
        out = run("strategies", "export", "--db", str(lib), "--format", "json", "--out", str(tmp_path / "o.json"))
        assert out.returncode == 0, out.stderr
        assert len(json.loads((tmp_path / "o.json").read_text())["strategies"]) == len(HOSTILE)
    assert digest(lib) == before


def test_an_oversized_file_is_refused_at_once(lib, tmp_path):
    md = tmp_path / "huge.md"
    with md.open("w") as fh:
        fh.write("# symkd strategy library\n\n<!-- symkd-strategies v1 -->\n\n### crlf\n\n> ")
        fh.write("x" * (MAX_FILE_BYTES + 1))
    before, began = state(lib), time.monotonic()
    _refused(run("strategies", "import", str(md), "--db", str(lib)), "a strategy library file may hold at most")
    assert time.monotonic() - began < 30 and state(lib) == before


def test_an_oversized_text_duplicate_ids_and_lone_surrogates_are_refused(lib, tmp_path):
    head = "# symkd strategy library\n\n<!-- symkd-strategies v1 -->\n\n"
    before = state(lib)
    md = tmp_path / "big.md"
    md.write_text(head + "### crlf\n\n> " + "y" * 2_000_000 + "\n")
    _refused(run("strategies", "import", str(md), "--db", str(lib)), "strategy crlf: its text has 2,000,000 characters")
    md.write_text(head + "### crlf\n\n> one\n\n### crlf\n\n> two\n")
    _refused(run("strategies", "import", str(md), "--db", str(lib)), "strategy crlf appears twice")
    js = tmp_path / "bad.json"
    js.write_text('{"format": "symkd-strategies", "strategies": [{"id": "crlf", "text": "bad \\ud800 text"}]}')
    _refused(run("strategies", "import", str(js), "--db", str(lib)), "lone surrogate")
    assert state(lib) == before
