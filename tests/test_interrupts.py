"""Ctrl-C, SIGTERM and kill -9 in the middle of ``symkd generate``, in real subprocesses.

An interrupted run prints one line, exits 128 + the signal, keeps every answer that arrived
and is recorded as ``interrupted``; a run killed with -9 (no chance to say so) is shown as
interrupted by ``symkd runs`` because its process is gone, and is resumed at once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.procs import ENV, LINE, ROOT, cmd, generate_args, ok_count, run, start, wait_for_answers, write_prompts

N = 200  # 100 ms a request, 4 in flight: 5 s of work, interrupted after a few answers


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_with_ctrl_c(*args: str) -> subprocess.Popen:
    """``symkd`` in a subprocess that Ctrl-C reaches however this test was started: a test
    run in the background of a non-interactive shell inherits SIGINT *ignored*, and symkd,
    like any Unix program, keeps an ignored SIGINT ignored (the run then finished, exit 0)."""
    return subprocess.Popen(cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
                            preexec_fn=_default_sigint)  # fmt: skip


def _run_row(db) -> dict:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("select * from runs").fetchone())
    finally:
        conn.close()


def _claims(db) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select count(*) from claims").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_prints_one_line_and_records_interrupted(tmp_path, slow_openai, signum, code):
    prompts, db = write_prompts(tmp_path / "p.jsonl", N), tmp_path / "r.db"
    proc = start_with_ctrl_c(*generate_args(slow_openai.base_url, prompts, db, "-c", "4"))
    wait_for_answers(db, 8, proc)
    assert ok_count(db) < N - 40, "the run must still be going when the signal lands"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert err.strip() == LINE and out == ""  # one line, no traceback, no summary
    row = _run_row(db)
    assert row["status"] == "interrupted" and row["finished_at"]
    stored = ok_count(db)
    assert 8 <= stored < N
    assert _claims(db) == 0  # what it had claimed but not answered is free again
    [listed] = json.loads(run("runs", "--db", str(db), "--json").stdout)
    assert (listed["status"], listed["ok"], listed["pending"]) == ("interrupted", stored, N - stored)


def test_kill_9_shows_as_interrupted_and_resumes_without_waiting_for_the_lease(tmp_path, slow_openai):
    prompts, db = write_prompts(tmp_path / "p.jsonl", N), tmp_path / "r.db"
    args = generate_args(slow_openai.base_url, prompts, db, "-c", "4", "--json")
    proc = start(*args)
    wait_for_answers(db, 8, proc)
    proc.kill()
    proc.communicate()
    assert _run_row(db)["status"] == "running"  # it had no chance to write anything
    listed = run("runs", "--db", str(db), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["status"] == "interrupted"  # its pid is gone
    table = run("runs", "--db", str(db), env={**ENV, "COLUMNS": "200"})
    assert "interrupted" in table.stdout
    stored = ok_count(db)
    began = time.monotonic()
    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert time.monotonic() - began < 25  # the dead owner's 30 s leases were taken over at once
    summary = json.loads(resumed.stdout)
    assert summary["cached"] == stored and summary["done"] == N - stored
    assert json.loads(run("runs", "--db", str(db), "--json").stdout)[0]["status"] == "done"
    sent = slow_openai.stats()["by_input"]
    assert len(sent) == N and sum(sent.values()) <= N + 4 + 16  # only what was in flight again
