"""Small ways the real ``symkd`` command used to end in a traceback or touch what it must not:
a bad ``--base-url``, ``--adopt`` on a database whose own table has one of symkd's names,
Ctrl-C while the command is still starting, and model text that cannot be stored as is."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from symkd.errors import UserError
from symkd.store.db import Store
from tests.procs import ENV, LINE, ROOT, generate_args, one_error_line, run, write_prompts

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "url, reason",
    [("http://127.0.0.1:99999/v1", "the port is out of range"), ("http://127.0.0.1:abc/v1", "the port is not a number"),
     ("http://[::1/v1", "an IPv6 address without its closing ]"), ("ftp://example.org/v1", "must start with http"),
     ("http:///v1", "no host name")],
)  # fmt: skip
@pytest.mark.parametrize("given", ["flag", "environment"])
def test_a_bad_base_url_is_one_line_exit_2(tmp_path, url, reason, given):
    prompts, db = write_prompts(tmp_path / "p.jsonl", 2), tmp_path / "r.db"
    url = url.replace("//", "//alice:s3cret-pw@", 1) if "[" not in url and "///" not in url else url
    args = ["generate", "-t", "openai:fake", "-p", str(prompts), "--db", str(db), "-q"]
    if given == "flag":
        proc = run(*args, "--base-url", url)
    else:
        proc = run(*args, env={**ENV, "OPENAI_BASE_URL": url})
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert ("--base-url: " if given == "flag" else "OPENAI_BASE_URL: ") in line and reason in line, line
    assert "s3cret-pw" not in line and "alice" not in line, "credentials are not repeated"
    assert not db.exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign(path: Path, table: str, columns: str) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(f"create table {table} ({columns})")
    conn.execute(f"insert into {table} values ({', '.join('?' * len(columns.split(',')))})", ["x"] * len(columns.split(",")))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("table, columns", [("runs", "run_no integer, started text"), ("claims", "who text"),
                                            ("meta", "name text, val text")])  # fmt: skip
def test_adopt_refuses_a_database_whose_own_table_has_one_of_our_names(tmp_path, fake_openai, table, columns):
    db = _foreign(tmp_path / "theirs.db", table, columns)
    before = _digest(db)
    proc = run(*generate_args(fake_openai.base_url, write_prompts(tmp_path / "p.jsonl", 2), db, "--adopt"))
    assert proc.returncode == 2, proc.stderr
    assert f"cannot add symkd's tables: its own table(s) '{table}' have the same name" in one_error_line(proc)
    assert _digest(db) == before and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("theirs")) == ["theirs.db"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "delete", "not switched to WAL"
    conn.close()
    assert fake_openai.stats()["total"] == 0


def test_a_pipeline_table_of_someone_else_is_refused_before_it_is_used(tmp_path):
    from symkd.pipelines.strategies.library import open_library

    db = _foreign(tmp_path / "theirs.db", "strategies", "title text, body text")
    Store(db, adopt=True).close()  # symkd's core tables may join theirs: no name is shared
    with pytest.raises(UserError, match="cannot add the strategies tables: its own table.s. 'strategies'"):
        open_library(db, create=True)
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from meta where key = 'schema_version:strategies'").fetchone()[0] == 0
    conn.close()


_IMPORT_HOOK = """
import builtins, os, signal, sys
real, target = builtins.__import__, sys.argv[1]
def hook(name, *args, **kwargs):
    if name == target:  # Ctrl-C lands while the command line is still loading this module
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
sys.argv = ["symkd", "teachers"]
from symkd.cli import main
main()
"""


@pytest.mark.parametrize("module", ["typer", "symkd.pipelines", "pydantic"])
def test_ctrl_c_while_starting_is_the_one_line(module):
    proc = subprocess.run([sys.executable, "-c", _IMPORT_HOOK, module], capture_output=True, text=True, env=ENV, cwd=ROOT,
                          timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == LINE + "\n" and proc.stdout == ""


class _Hostile(threading.Thread):
    """A tiny OpenAI-compatible server whose every answer is hostile model text."""

    TEXT = "ok \\ud800 lone, \\u001b]0;owned\\u0007 OSC, \\u001b[31m red, NUL \\u0000, \\u2028 sep, " + "x" * 200_000

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import http.server

        body = ('{"choices": [{"index": 0, "message": {"role": "assistant", "content": "%s"}, "finish_reason": "stop"}],'
                ' "usage": {"prompt_tokens": 1, "completion_tokens": 1}}' % self.TEXT).encode()  # fmt: skip

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # /models
                self._send(b'{"data": []}')

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self._send(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def run(self) -> None:
        self.server.serve_forever()


def test_hostile_model_text_is_stored_and_written_safely(tmp_path):
    server = _Hostile()
    server.start()
    try:
        prompts, db, out = tmp_path / "p.jsonl", tmp_path / "r.db", tmp_path / "o.jsonl"
        prompts.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n')
        proc = run("generate", "-t", "openai:fake", "--base-url", server.url, "-p", str(prompts), "--db", str(db), "-q",
                   "--out", str(out), "--json")  # fmt: skip
    finally:
        server.server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["done"] == 1
    (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    text = row["completions"][0]
    assert text.startswith("ok \ufffd lone, \x1b]0;owned\x07 OSC") and "NUL \x00" in text and len(text) > 200_000
    raw = out.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\u2028" not in raw, "the JSONL file holds escapes, not raw controls"
    conn = sqlite3.connect(db)
    assert conn.execute("select text from responses").fetchone()[0] == text
    conn.close()
    assert os.path.getsize(out) > 200_000
