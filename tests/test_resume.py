"""kill -9 in the middle of a run, then resume: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

N_ITEMS = 240
CONCURRENCY = 4


def _count_ok(db) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        return conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path, slow_openai):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"i{i}", "prompt": f"item {i}"}) + "\n" for i in range(N_ITEMS)))
    db = tmp_path / "r.db"
    cmd = [
        sys.executable, "-m", "symkd.cli", "generate", "-t", "openai:fake", "--base-url", slow_openai.base_url,
        "-p", str(prompts), "--db", str(db), "-c", str(CONCURRENCY), "-q", "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _count_ok(db) < N_ITEMS // 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _count_ok(db)
    assert 0 < done_before < N_ITEMS, "the kill must land mid-run"

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["cached"] == done_before and summary["done"] == N_ITEMS - done_before and summary["failed"] == 0

    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from runs").fetchone()[0] == 1
    assert conn.execute("select status, attempts from runs").fetchone() == ("done", 2)
    assert conn.execute("select count(*) from run_items").fetchone()[0] == N_ITEMS
    assert conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0] == N_ITEMS
    texts = {row[0] for row in conn.execute("select text from responses")}
    assert texts == {f"echo 0: item {i}" for i in range(N_ITEMS)}
    # Only work that was in flight or not yet committed at the kill is asked for again.
    sent = slow_openai.stats()["total"]
    assert N_ITEMS <= sent <= N_ITEMS + CONCURRENCY + 16
