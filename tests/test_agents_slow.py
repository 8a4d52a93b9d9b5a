"""Agents end to end on real models (slow): the embedded SmolLM2 as an agent through the CLI,
and `agent train` of a tiny student on gold-rationale trajectories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_agents_units import DATA, run_cli

pytestmark = pytest.mark.slow


def _tasks(tmp_path: Path, n: int) -> Path:
    if not (DATA / "test.jsonl").is_file():
        pytest.skip("../shared/data/gsm8k/test.jsonl is absent")
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join((DATA / "test.jsonl").read_text().splitlines(keepends=True)[:n]))
    return path


def test_embedded_model_solves_as_an_agent_and_resumes_from_cache(capsys, tmp_path):
    tasks, db, out = _tasks(tmp_path, 2), tmp_path / "eval.db", tmp_path / "items.jsonl"
    args = ["agent", "eval", "--teacher", "smollm2", "--data", str(tasks), "--db", str(db), "--max-steps", "2",
            "--max-tokens", "24", "--out", str(out), "--json", "-q"]  # fmt: skip
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    metrics = json.loads(stdout)
    assert metrics["items"] == 2 and 1 <= metrics["avg_steps"] <= 2 and 0 <= metrics["accuracy"] <= 1
    items = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(i["source"] == "eval" and i["n_steps"] == len(i["steps"]) for i in items)
    assert all(i["steps"][0]["observation"] is None or i["steps"][0]["observation"].startswith("Observation:") for i in items)
    code, stdout2, _ = run_cli(capsys, *args)  # every step answered from the cache: the same trajectories
    assert code == 0 and json.loads(stdout2)["accuracy"] == metrics["accuracy"]
    def texts(rows):  # what the model wrote and saw (sandbox timings differ)
        return [[(s["raw"], s["observation"]) for s in r["steps"]] for r in rows]

    assert texts(json.loads(line) for line in out.read_text().splitlines()) == texts(items)


def test_agent_train_on_gold_trajectories(capsys, tmp_path, tiny_lm):
    if not (DATA / "train.jsonl").is_file():
        pytest.skip("../shared/data/gsm8k/train.jsonl is absent")
    train = tmp_path / "train.jsonl"
    train.write_text("".join((DATA / "train.jsonl").read_text().splitlines(keepends=True)[:6]))
    db = tmp_path / "run.db"
    assert run_cli(capsys, "agent", "generate", "--source", "gold-rationales", "--data", str(train), "--db", str(db), "-q")[0] == 0
    code, stdout, err = run_cli(capsys, "agent", "train", "--db", str(db), "--source", "gold-rationales",
                                "--base-model", str(tiny_lm), "--out", str(tmp_path / "student"), "--max-steps", "2",
                                "--batch-size", "2", "--max-length", "512", "--eval-fraction", "0", "-q")  # fmt: skip
    assert code == 0, err
    card = json.loads((tmp_path / "student" / "training.json").read_text())
    assert card["data"]["source"]["kind"] == "agent-trajectories" and card["data"]["train_examples"] == 6
    assert (tmp_path / "student" / "config.json").exists()
    # evaluating the student records the result in its card (Hub model-index) and training.json
    test = tmp_path / "test.jsonl"
    test.write_text("".join((DATA / "train.jsonl").read_text().splitlines(keepends=True)[:2]))
    code, _, err = run_cli(capsys, "agent", "eval", "--model", str(tmp_path / "student"), "--data", str(test),
                           "--db", str(tmp_path / "eval.db"), "--max-agent-steps", "1", "--max-tokens", "8", "-q")  # fmt: skip
    assert code == 0, err
    evaluations = json.loads((tmp_path / "student" / "training.json").read_text())["evaluations"]
    assert evaluations["gsm8k-agent"]["metrics"]["items"] == 2
    assert "| gsm8k-agent | test.jsonl |" in (tmp_path / "student" / "README.md").read_text()
