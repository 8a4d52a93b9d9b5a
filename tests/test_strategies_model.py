"""The strategies pipeline with the embedded SmolLM2-135M as teacher and student (slow).

Each step on a handful of GSM8K train problems, and a real ``kill -9`` of ``symkd strategies
learn`` followed by a rerun. Needs ../shared/data/gsm8k (skipped with a reason otherwise).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import SHARED_DATA

TRAIN = SHARED_DATA / "gsm8k" / "train.jsonl"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not TRAIN.is_file(), reason=f"needs {TRAIN} (the shared GSM8K data)"),
]


@pytest.fixture
def small_train(tmp_path):
    path = tmp_path / "train6.jsonl"
    with TRAIN.open() as fh:
        path.write_text("".join(next(fh) for _ in range(6)))
    return path


def test_each_step_on_the_embedded_model(tmp_path, small_train):
    from symkd.pipelines.strategies.acceptance import Trial
    from symkd.pipelines.strategies.proposals import ProposalStage
    from symkd.pipelines.strategies.scenarios import ScenarioStage, read_scenarios
    from symkd.stages import run_stage
    from symkd.pipelines.strategies.student import StudentScorer
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    scenarios = read_scenarios(small_train)[:2]
    store = Store(tmp_path / "s.db")
    with TeacherSession("smollm2", store, progress=False) as session:
        scorer = StudentScorer(session, max_tokens=24)
        trials = [Trial(s) for s in scenarios] + [Trial(scenarios[0], ("When a total is asked, add every part.",))]
        attempts = scorer.attempt(trials, stage="attempts")
        assert len(attempts) == 3 and all(a.text for a in attempts)
        assert session.stages["attempts"]["done"] == 3
        scorer.attempt(trials, stage="again")
        assert session.stages["again"]["cached"] == 3 and session.stages["again"]["done"] == 0

        (answer,) = run_stage(session, ProposalStage(), [(scenarios[0], attempts[0].text)], label="propose")
        assert answer.request.template_id == "strategies/propose" and answer.answered
        strategy = answer.parsed
        assert strategy.startswith("When ") and "\n" not in strategy

        stage = ScenarioStage(seed=0, round_=1)
        (answer,) = run_stage(session, stage, stage.rows(scenarios[:1], 1), label="scenario")
        new = answer.parsed
        assert new is None or (new.source == "synthetic" and new.parent == scenarios[0].id and new.answer)
    store.close()


def _ok_responses(db) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        return conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _snapshot(db) -> dict:
    conn = sqlite3.connect(db)
    try:
        strategies = conn.execute("select id, status, text, evidence, merged_into, source_scenarios from strategies order by id").fetchall()
        rounds = conn.execute("select round, scenarios, failed, accuracy, proposals, critic_rejected, accepted, rejected,"
                              " merged, library_size from strategy_rounds order by round").fetchall()  # fmt: skip
        versions = conn.execute("select count(*) from strategy_versions").fetchone()[0]
        scenarios = conn.execute("select count(*) from strategy_scenarios").fetchone()[0]
    finally:
        conn.close()
    return {"strategies": strategies, "rounds": rounds, "versions": versions, "scenarios": scenarios}


def test_kill_9_then_rerun_loses_and_duplicates_nothing(tmp_path, small_train):
    db = tmp_path / "lib.db"
    cmd = [sys.executable, "-m", "symkd.cli", "strategies", "learn", "--data", str(small_train), "--db", str(db),
           "--rounds", "2", "--scenarios", "4", "--per-round", "2", "--validation", "2", "--control", "1",
           "--student-max-tokens", "24", "-q", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _ok_responses(db) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _ok_responses(db)
    assert done_before >= 3 and _snapshot(db)["rounds"] == [], "the kill lands in round 1"

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert sum(s["cached"] for s in report["stages"].values()) >= done_before, "what was answered before the kill is reused"
    after = _snapshot(db)
    merged = sum(1 for s in after["strategies"] if s[1] == "merged")
    assert after["versions"] == len(after["strategies"]) + merged
    assert after["scenarios"] == 4 and sum(r[4] for r in after["rounds"]) == len(after["strategies"])

    # An uninterrupted run on the same cached answers decides exactly the same things.
    replay = tmp_path / "replay.db"
    source, conn = sqlite3.connect(db), sqlite3.connect(replay)
    source.backup(conn)  # WAL-aware copy
    source.close()
    for table in ("strategy_versions", "strategies", "strategy_rounds", "strategy_scenarios"):
        conn.execute(f"delete from {table}")
    conn.commit()
    conn.close()
    again = subprocess.run([*cmd[:cmd.index("--db") + 1], str(replay), *cmd[cmd.index("--db") + 2:]],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sum(s["done"] for s in json.loads(again.stdout)["stages"].values()) == 0, "the replay needs no generation"
    assert _snapshot(replay) == after
