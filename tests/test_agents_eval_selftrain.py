"""Evaluation bookkeeping (failed requests, votes, stored predictions) and self-training rounds."""

from __future__ import annotations

from pathlib import Path

from symkd.pipelines.agents import self_train as st
from symkd.pipelines.agents import tables
from symkd.pipelines.agents.episode import Episode
from symkd.pipelines.agents.evaluation import VOTE_SAMPLE, episode_predictions, majority_rows, paired_outcomes, summarize
from symkd.pipelines.agents.gsm8k import Task
from symkd.pipelines.agents.loop import AgentConfig, _request
from symkd.stats import mcnemar_exact, wilson_interval
from symkd.store.db import Store


def _task(i: int, answer: str = "18") -> Task:
    return Task(f"t{i}", f"question {i}?", "", answer)


def _episode(task: Task, sample: int = 0, answer: str | None = None, error: str | None = None) -> Episode:
    e = Episode(task, sample, [{"role": "user", "content": task.question}], "agents/codeact", "1")
    e.final_answer, e.error, e.done = answer, error, True
    return e


def test_a_failed_request_counts_as_wrong_and_stays_in_the_denominator():
    episodes = [_episode(_task(0), answer="18"), _episode(_task(1), error="HTTP 500"), _episode(_task(2), answer="7")]
    rows = episode_predictions(episodes, {})
    metrics = summarize(rows, [], "agent")
    assert metrics["items"] == 3 and metrics["correct"] == 1 and metrics["failed_requests"] == 1
    assert metrics["accuracy"] == round(1 / 3, 4) and metrics["answered_rate"] == round(2 / 3, 4)
    assert metrics["ci95"] == list(wilson_interval(1, 3))


def test_majority_vote_groups_numbers_and_breaks_ties_by_the_earliest_sample():
    t0, t1 = _task(0), _task(1, "5")
    episodes = [_episode(t0, 0, "17"), _episode(t0, 1, "18.0"), _episode(t0, 2, "$18"), _episode(t0, 3, None),
                _episode(t1, 0, "4"), _episode(t1, 1, "5")]  # fmt: skip
    rows = episode_predictions(episodes, {})
    votes = {r["task_id"]: r for r in majority_rows(rows, [t0, t1])}
    assert votes["t0"]["correct"] == 1 and votes["t0"]["sample"] == VOTE_SAMPLE
    assert votes["t1"]["prediction"] == "4" and votes["t1"]["correct"] == 0  # 1-1 tie: the earliest sample
    metrics = summarize(rows + list(votes.values()), [], "agent")
    assert metrics["accuracy"] == 0.5 and metrics["pass_at_k"] == 1.0 and metrics["sample_accuracy"] == round(3 / 6, 4)
    assert paired_outcomes(rows + list(votes.values())) == {"t0": True, "t1": False}


def test_predictions_are_stored_and_read_back(tmp_path: Path):
    rows = episode_predictions([_episode(_task(0), answer="18"), _episode(_task(1), error="boom")], {})
    with Store(tmp_path / "e.db") as store:
        tables.write_evaluation(store, {"id": "ev1", "model": "m", "data": "d", "mode": "agent", "n": 2, "correct": 1,
                                        "accuracy": 0.5, "ci95_low": 0.1, "ci95_high": 0.9, "answered_rate": 0.5,
                                        "config": {}, "metrics": {}}, rows)  # fmt: skip
        tables.write_evaluation(store, {"id": "ev1", "model": "m", "data": "d", "mode": "agent", "n": 2, "correct": 1,
                                        "accuracy": 0.5, "ci95_low": 0.1, "ci95_high": 0.9, "answered_rate": 0.5,
                                        "config": {}, "metrics": {}}, rows)  # rewriting replaces, never duplicates
        back = tables.read_predictions(store, "ev1")
    assert [(r["task_id"], r["correct"], r["error"]) for r in back] == [("t0", 1, None), ("t1", 0, "boom")]


def test_mcnemar_counts_only_discordant_pairs():
    a = [True] * 10 + [False] * 10
    b = [False] * 10 + [False] * 10
    assert mcnemar_exact(a, b) == {"a_only": 10, "b_only": 0, "p_value": round(2 * 0.5**10, 6)}
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_samples_of_one_task_get_their_own_seeds():
    config = AgentConfig(temperature=0.7, seed=3)
    task = _task(0)
    first, second = (_request(Episode(task, s, [{"role": "user", "content": "q"}], "t", "1"), config.params(), None)
                     for s in (0, 1))  # fmt: skip
    assert first.params.seed == 3 and second.params.seed != 3


def _row(task: str, code: str, correct: int) -> dict:
    return {"task_id": task, "correct": correct, "steps": [{"code": code}]}


def test_only_correct_trajectories_with_new_code_are_added():
    seen: dict[str, set[str]] = {}
    st.new_positives([_row("a", "x = 1\nprint(x)", 1)], seen)  # the gold one
    sampled = [_row("a", "x  =  1\nprint(x)", 1), _row("a", "y = 2", 1), _row("a", "z = 3", 0), _row("b", "y = 2", 1)]
    assert [(r["task_id"], r["steps"][0]["code"]) for r in st.new_positives(sampled, seen)] == [("a", "y = 2"), ("b", "y = 2")]
    assert st.should_stop(0, None, None) and st.should_stop(3, 0.1, 0.2) and st.should_stop(3, 0.2, 0.1) is None


def test_redi_negatives_are_paired_with_positives_of_the_same_task():
    """One distinct failed episode per positive of its task, as the paper's (x, y+, y-) pairs; a task
    with no positive gives no negative (its failures have nothing to be contrasted with)."""
    positives = [_row("a", "x = 1", 1), _row("a", "x = 2", 1), _row("b", "y = 1", 1)]
    sampled = [_row("a", "bad = 1", 0), _row("a", "bad  =  1", 0), _row("a", "bad = 2", 0), _row("a", "bad = 3", 0),
               _row("b", "x = 1", 1), _row("b", "nope", 0), _row("b", "nope 2", 0), _row("c", "lost", 0)]  # fmt: skip
    kept = st.paired_negatives(positives, sampled)
    assert [(r["task_id"], r["steps"][0]["code"]) for r in kept] == [("a", "bad = 1"), ("a", "bad = 2"), ("b", "nope")]
    assert st.paired_negatives([], sampled) == []


def test_finished_rounds_are_skipped_on_rerun(tmp_path: Path, monkeypatch):
    db, data = tmp_path / "st.db", tmp_path / "train.jsonl"
    data.write_text('{"question": "q?", "answer": "#### 1"}\n')
    calls = []

    def fake_round(db_, tasks, generator, out, r, *rest):
        calls.append(r)
        row = {"round": r, "generator": f"hf:{generator}", "tasks": len(tasks), "sampled": 2, "correct": 1, "added": 1,
               "examples": 1 + r, "student": str(out / f"round-{r}"), "training": {}, "evaluation": {"accuracy": 0.1 * r},
               "status": "done"}  # fmt: skip
        with Store(db_) as store:
            st.record_round(store, row)
        return row

    monkeypatch.setattr(st, "_one_round", fake_round)
    config = st.SelfTrainConfig(rounds=2)
    first = st.run(db, data, tmp_path / "s0", tmp_path / "out", config=config, train_options={})
    assert calls == [1, 2] and [r["round"] for r in first["rounds"]] == [1, 2]
    calls.clear()
    again = st.run(db, data, tmp_path / "s0", tmp_path / "out", config=st.SelfTrainConfig(rounds=3), train_options={})
    assert calls == [3]  # rounds 1 and 2 come from the table
    assert [r["generator"] for r in again["rounds"]] == [f"hf:{tmp_path / 's0'}", f"hf:{tmp_path / 'out' / 'round-1'}",
                                                         f"hf:{tmp_path / 'out' / 'round-2'}"]  # fmt: skip


def test_cli_votes_and_same_as(capsys, tmp_path: Path):
    from tests.procs import run_cli

    train = tmp_path / "train.jsonl"
    train.write_text('{"question": "Ann has 3 bags of 4 pens. How many pens?", "answer": "3*4=<<3*4=12>>12 pens.\\n#### 12"}\n'
                     '{"question": "Bob has 5 pens and no other.", "answer": "He has 5 pens.\\n#### 5"}\n')  # fmt: skip
    code, _, err = run_cli(capsys, "agent", "eval", "--teacher", "smollm2", "--data", str(train), "--votes", "1",
                           "--db", str(tmp_path / "e.db"))  # fmt: skip
    assert code == 2 and "--votes" in err and err.strip().count("\n") == 0
    db = tmp_path / "gold.db"
    assert run_cli(capsys, "agent", "generate", "--source", "gold-rationales", "--data", str(train), "--db", str(db), "-q")[0] == 0
    code, out, _ = run_cli(capsys, "agent", "export-cot", "--data", str(train), "--same-as", str(db), "--out", str(tmp_path / "c.jsonl"))
    assert code == 0 and "1 solutions" in out  # the second problem has no annotation, so no trajectory
