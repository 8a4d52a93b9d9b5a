"""bench/agent_acceptance.py's result document across runs: a resumed run of one setting is
paired with the settings an earlier run measured, and the command line's overrides reach it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("agent_acceptance", ROOT / "bench" / "agent_acceptance.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def earlier_record(path: Path) -> None:
    settings = [{"name": "agent_8", "evaluation_id": "e1", "outcome_bits": "1100", "correct": 2},
                {"name": "agent_8_x4", "evaluation_id": "e2", "outcome_bits": "0110", "correct": 2},
                {"name": "base_agent", "skipped": "not run"}]  # fmt: skip
    path.write_text(json.dumps({"item_ids": ["a", "b", "c", "d"], "settings": settings, "mcnemar": {}, "data": {}, "seconds": 100.0}))


def test_a_resumed_run_pairs_its_setting_with_the_earlier_runs_settings(tmp_path: Path):
    out = tmp_path / "record.json"
    earlier_record(out)
    args = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path / "work"), "--out", str(out), "--resume", "--device", "cpu",
                             "--epochs", "3"])  # fmt: skip
    run = bench.new_run(args)
    run.outcomes["agent_8_x16"] = {"a": True, "b": True, "c": True, "d": False}  # this run's setting
    run.compare("agent_8_x16", "agent_8")
    run.compare("agent_8_x16", "agent_8_x4")
    run.compare("agent_8_x16", "base_agent")  # skipped earlier: nothing to pair with
    tests = json.loads(out.read_text())["mcnemar"]
    assert set(tests) == {"agent_8_x16 vs agent_8", "agent_8_x16 vs agent_8_x4"}
    assert (tests["agent_8_x16 vs agent_8"]["a_only"], tests["agent_8_x16 vs agent_8"]["b_only"]) == (1, 0)
    assert (tests["agent_8_x16 vs agent_8_x4"]["a_only"], tests["agent_8_x16 vs agent_8_x4"]["b_only"]) == (1, 0)
    assert tests["agent_8_x16 vs agent_8"]["n"] == 4
    # the record keeps the preset's config (each setting records its own epochs) and the wall time of every run
    doc = json.loads(out.read_text())
    assert doc["config"]["epochs"] == bench.PRESETS["smoke"]["epochs"] and doc["seconds"] >= 100.0


def test_epochs_on_the_command_line_override_the_preset_for_every_setting():
    base = bench.preset_for(bench.parse_args(["--preset", "cpu"]))
    assert base["epochs"] == bench.PRESETS["cpu"]["epochs"]
    assert bench.preset_for(bench.parse_args(["--preset", "cpu", "--epochs", "1"]))["epochs"] == 1.0
    assert bench.PRESETS["cpu"]["epochs"] == 2.0  # the preset itself is untouched


def test_an_evaluation_in_another_dtype_is_its_own_setting_paired_with_the_default_one(tmp_path: Path, monkeypatch):
    """--eval-dtype bfloat16: eval:8 re-evaluates agent_8 as agent_8@bfloat16, votes:8 records
    agent_8_maj2@bfloat16 and sag:8 agent_8_sag2@bfloat16, each paired with the recorded float32 run
    (and maj@K and SAG with their dtype's greedy run)."""
    out = tmp_path / "record.json"
    earlier_record(out)
    seen: list[dict] = []

    def evaluate(spec, mode, test, db, n_test, cfg, *, votes=0, sag=0, **_):
        seen.append({"dtype": cfg["dtype"], "votes": votes, "sag": sag})
        bits = [True, False, False, False] if votes else [True, True, True, False] if sag else [True, True, False, False]
        return {"accuracy": sum(bits) / 4, "eval_dtype": cfg["dtype"]}, dict(zip("abcd", bits))

    monkeypatch.setattr(bench.steps, "evaluate", evaluate)
    args = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path / "work"), "--out", str(out), "--resume",
                             "--eval-dtype", "bfloat16"])  # fmt: skip
    run = bench.new_run(args)
    bench.evaluated_again(run, "agent_8")
    bench.sampled(run, "agent_8", "votes")
    bench.sampled(run, "agent_8", "sag")
    doc = json.loads(out.read_text())
    names = [s["name"] for s in doc["settings"]]
    assert {"agent_8@bfloat16", "agent_8_maj2@bfloat16", "agent_8_sag2@bfloat16"} <= set(names) and names.count("agent_8") == 1
    assert seen == [{"dtype": "bfloat16", "votes": 0, "sag": 0}, {"dtype": "bfloat16", "votes": 2, "sag": 0},
                    {"dtype": "bfloat16", "votes": 0, "sag": 2}]  # fmt: skip
    assert set(doc["mcnemar"]) == {"agent_8@bfloat16 vs agent_8", "agent_8_maj2@bfloat16 vs agent_8",
                                   "agent_8_maj2@bfloat16 vs agent_8@bfloat16", "agent_8_sag2@bfloat16 vs agent_8",
                                   "agent_8_sag2@bfloat16 vs agent_8@bfloat16"}  # fmt: skip
    assert doc["mcnemar"]["agent_8_maj2@bfloat16 vs agent_8@bfloat16"]["b_only"] == 1
    assert doc["mcnemar"]["agent_8_sag2@bfloat16 vs agent_8@bfloat16"]["a_only"] == 1
    # the other order (maj@K recorded first, as --plan votes:8,eval:8 runs them) gives the same pair
    out2 = tmp_path / "record2.json"
    earlier_record(out2)
    args2 = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path / "work2"), "--out", str(out2), "--resume",
                              "--eval-dtype", "bfloat16"])  # fmt: skip
    run2 = bench.new_run(args2)
    bench.sampled(run2, "agent_8", "votes")
    bench.sampled(run2, "agent_8", "sag")
    bench.evaluated_again(run2, "agent_8")
    assert json.loads(out2.read_text())["mcnemar"] == doc["mcnemar"]


def test_a_second_evaluation_without_a_dtype_is_refused():
    import pytest

    args = bench.parse_args(["--preset", "smoke"])
    run = type("R", (), {"args": args, "preset": bench.preset_for(args)})()
    with pytest.raises(SystemExit, match="needs --eval-dtype"):
        bench.evaluated_again(run, "agent_8")


def test_retrain_trains_a_recorded_student_missing_from_the_work_folder_and_keeps_its_evaluation(tmp_path: Path, monkeypatch):
    """--resume --retrain on a new machine: agent_8 is trained again (so votes:/eval:/self: can load it),
    its recorded evaluation and outcomes are kept, and a changed training is flagged, not hidden."""
    out, work = tmp_path / "record.json", tmp_path / "work"
    loss = {"train_loss": 0.5, "eval_loss": None}
    out.write_text(json.dumps({"item_ids": list("abcd"), "mcnemar": {}, "data": {}, "seconds": 10.0, "settings": [
        {"name": "agent_8", "evaluation_id": "e1", "outcome_bits": "1100", "correct": 2, "train_tokens": 100,
         "final_loss": loss, "seconds": 99.0, "hardware": "earlier machine"}]}))  # fmt: skip
    trained: list[str] = []

    def train_student(name, data, folder, common, **_):
        trained.append(name)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        return {"name": name, "train_tokens": 100, "final_loss": loss, "train_seconds": 1.0}

    def evaluate(*_, **__):
        raise AssertionError("a retrained student's recorded evaluation is kept, not run again")

    monkeypatch.setattr(bench.steps, "train_student", train_student)
    monkeypatch.setattr(bench.steps, "evaluate", evaluate)
    args = bench.parse_args(["--preset", "smoke", "--work", str(work), "--out", str(out), "--resume", "--retrain"])

    def run_agent_8(run):
        run.setting("agent_8", lambda: bench.trained_and_evaluated(run, "agent_8", "agent", [], epochs=1, n_problems=8))

    run = bench.new_run(args)
    run_agent_8(run)
    [record] = json.loads(out.read_text())["settings"]
    assert trained == ["agent_8"] and record["retrained"]["same_as_recorded"] is True
    assert record["retrained"]["loss_relative_difference"] == 0.0
    assert (record["outcome_bits"], record["evaluation_id"], record["seconds"], record["hardware"]) == ("1100", "e1", 99.0, "earlier machine")
    assert run.outcome("agent_8") == {"a": True, "b": True, "c": False, "d": False}
    run_agent_8(bench.new_run(args))  # its folder is there now: resumed, not trained again
    assert trained == ["agent_8"]
    assert run.needs_retraining({"name": "agent_8", "train_tokens": 100}) is False
    assert bench.new_run(bench.parse_args(["--preset", "smoke", "--work", str(tmp_path / "new"), "--out", str(out),
                                           "--resume"])).needs_retraining({"name": "agent_8", "train_tokens": 100}) is False  # no --retrain


def test_a_retraining_whose_loss_drifted_is_flagged_with_the_size_of_the_drift(tmp_path: Path):
    """CPU kernels are not bitwise reproducible: a retrained student whose final loss moved in the 4th
    digit is not called the same, and the record says by how much it moved."""
    args = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path), "--out", str(tmp_path / "r.json"), "--retrain"])
    run = bench.new_run(args)
    run.reused["agent_8"] = ({"name": "agent_8", "train_tokens": 100, "final_loss": {"train_loss": 0.2}}, None)
    kept = run.retrained("agent_8", {"train_tokens": 100, "final_loss": {"train_loss": 0.2001}, "train_seconds": 1.0})
    assert kept["retrained"]["same_as_recorded"] is False
    assert kept["retrained"]["loss_relative_difference"] == 0.0005


def test_self_training_on_a_new_machine_trains_its_seed_student_again_first(tmp_path: Path, monkeypatch):
    """self:8 with --retrain and no agent_8 weights in --work retrains agent_8 before sampling from it
    (no size:8 item, which would retrain the CoT student too); without --retrain it does not."""
    from symkd.pipelines.agents import self_train as st

    calls: list[tuple] = []
    monkeypatch.setattr(bench, "agent_student", lambda run, n: calls.append(("seed", n)))
    monkeypatch.setattr(bench.steps, "train_tasks", lambda data_dir, n: [])

    def sample_round(store, spec, *_):
        calls.append(("sample", spec))
        raise RuntimeError("stop after sampling")

    monkeypatch.setattr(st, "sample_round", sample_round)
    for flags, expected in ((["--retrain"], ["seed", "sample"]), ([], ["sample"])):
        calls.clear()
        work = tmp_path / f"work{len(flags)}"
        work.mkdir()
        args = bench.parse_args(["--preset", "smoke", "--work", str(work), "--out", str(work / "r.json"),
                                 "--gold-db", str(work / "gold.db"), *flags])  # fmt: skip
        bench.self_train_and_redi(bench.new_run(args), "agent_8", 8)
        assert [c[0] for c in calls] == expected and calls[-1][1] == f"hf:{work / 'agent_8'}"


def test_sag_and_eval_items_on_a_new_machine_train_their_student_again_first(tmp_path: Path, monkeypatch):
    """sag:8 (and eval:8) with --retrain and no agent_8 weights in --work retrain agent_8 before
    evaluating it with K = the preset's sag; a variant student cannot be retrained alone: one clear line."""
    calls: list[tuple] = []
    monkeypatch.setattr(bench, "agent_student", lambda run, n: calls.append(("seed", n)))

    def evaluate(spec, mode, test, db, n_test, cfg, *, votes=0, sag=0, **_):
        calls.append(("eval", spec, sag))
        return {"accuracy": 0.0}, dict.fromkeys("abcd", False)

    monkeypatch.setattr(bench.steps, "evaluate", evaluate)
    args = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path), "--out", str(tmp_path / "r.json"),
                             "--retrain", "--eval-dtype", "bfloat16"])  # fmt: skip
    run = bench.new_run(args)
    bench.sampled(run, "agent_8", "sag")
    assert calls == [("seed", 8), ("eval", f"hf:{tmp_path / 'agent_8'}", 2)]
    assert [s["name"] for s in json.loads((tmp_path / "r.json").read_text())["settings"]] == ["agent_8_sag2@bfloat16"]
    bench.sampled(run, "agent_8", "sag", 3)  # sag:8:3 on the plan
    assert calls[-1] == ("eval", f"hf:{tmp_path / 'agent_8'}", 3)
    assert "agent_8_sag3@bfloat16" in {s["name"] for s in json.loads((tmp_path / "r.json").read_text())["settings"]}
    with pytest.raises(SystemExit, match="agent_8_x4 is not a plain size's student"):
        bench.evaluated_again(run, "agent_8_x4")


def test_a_recorded_setting_is_paired_by_its_own_outcome_bits_not_by_another_run_under_its_id(tmp_path: Path):
    """eval.db may hold a later run under an old record's evaluation id (before ids carried the dtype):
    the record's own bits decide its outcomes; eval.db only stands in where the bits are missing."""
    from symkd.pipelines.agents import tables
    from symkd.store.db import Store

    out, work = tmp_path / "record.json", tmp_path / "work"
    earlier_record(out)
    work.mkdir()
    rows = [{"task_id": t, "sample": 0, "prediction": "1", "correct": int(c), "answered": 1, "finished": 1,
             "error": None, "completion": None, "trajectory_id": None} for t, c in zip("abcd", (0, 0, 1, 1))]  # fmt: skip
    with Store(work / "eval.db") as store:
        tables.write_evaluation(store, {"id": "e1", "model": "other run", "data": "t", "mode": "agent", "n": 4}, rows)
    run = bench.new_run(bench.parse_args(["--preset", "smoke", "--work", str(work), "--out", str(out), "--resume"]))
    assert run.outcome("agent_8") == {"a": True, "b": True, "c": False, "d": False}  # its bits "1100"
    assert run.previous_outcome({"name": "old", "evaluation_id": "e1"}) == {"a": False, "b": False, "c": True, "d": True}


def test_epochs_item_trains_the_same_data_longer_and_pairs_it_with_the_shorter_and_variant_students(tmp_path: Path, monkeypatch):
    """epochs:8:6 -> agent_8_e6, trained 6 epochs on agent_8's data, paired with agent_8 and agent_8_x4."""
    out = tmp_path / "record.json"
    earlier_record(out)
    trained: list[tuple] = []
    monkeypatch.setattr(bench.steps, "train_tasks", lambda data_dir, n: ["t"] * n)
    monkeypatch.setattr(bench.steps, "gold_rows", lambda db, tasks, **_: [])
    monkeypatch.setattr(bench.steps, "agent_training_data", lambda rows, *a, **k: ["example"])

    def train_student(name, data, folder, common, *, epochs=None, budget=None):
        trained.append((name, data, epochs))
        return {"train_tokens": 600, "epochs": epochs}

    monkeypatch.setattr(bench.steps, "train_student", train_student)
    monkeypatch.setattr(bench.steps, "evaluate", lambda *a, **k: ({"accuracy": 0.75, "evaluation_id": "e9"},
                                                                  dict(zip("abcd", (True, True, True, False)))))  # fmt: skip
    (tmp_path / "gold.db").write_bytes(b"")  # present: no conversion
    doc = bench.main(["--preset", "smoke", "--work", str(tmp_path / "w"), "--out", str(out), "--resume",
                      "--gold-db", str(tmp_path / "gold.db"), "--plan", "epochs:8:6"])  # fmt: skip
    assert trained == [("agent_8_e6", ["example"], 6.0)]
    # size:8 in a fresh record: the agent student, then the CoT one on the same problems at its token budget
    monkeypatch.setattr(bench.steps, "cot_data", lambda tasks, rows, path: ["cot", len(tasks)])
    trained.clear()
    bench.main(["--preset", "smoke", "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "r2.json"),
                "--gold-db", str(tmp_path / "gold.db"), "--plan", "size:8"])  # fmt: skip
    assert trained == [("agent_8", ["example"], bench.PRESETS["smoke"]["epochs"]), ("cot_8", ["cot", 8], None)]
    assert {"agent_8_e6 vs agent_8", "agent_8_e6 vs agent_8_x4"} <= set(doc["mcnemar"])
    assert doc["mcnemar"]["agent_8_e6 vs agent_8"]["a_only"] == 1  # c right only in the longer-trained one


def test_a_gold_db_converted_for_a_smaller_plan_is_extended_not_silently_reused(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    lines = (ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl").read_text().splitlines()
    (data / "train.jsonl").write_text("\n".join(lines[:6]) + "\n")
    common = ["--preset", "smoke", "--work", str(tmp_path / "work"), "--data-dir", str(data)]
    (tmp_path / "work").mkdir()
    small = bench.new_run(bench.parse_args(common + ["--out", str(tmp_path / "a.json")]))
    bench.gold_for_plan(small, ["size:3"])
    gold = tmp_path / "work" / "gold.db"

    def tasks() -> set[str]:
        from symkd.store.db import Store

        with Store(gold) as store:
            return {r[0] for r in store.db.execute("select task_id from trajectories where source = 'gold-rationales'")}

    first = tasks()
    assert first and all(int(t.split(":")[1]) <= 3 for t in first)
    bench.gold_for_plan(small, ["eval:3"])  # trains nothing from gold data: nothing converted
    assert tasks() == first
    larger = bench.new_run(bench.parse_args(common + ["--out", str(tmp_path / "b.json")]))
    bench.gold_for_plan(larger, ["epochs:6:2"])
    assert first < tasks() and any(int(t.split(":")[1]) > 3 for t in tasks())
    assert larger.doc["data"]["gold"]["tasks"] == 6


def test_compare_pairs_two_recorded_settings_and_refuses_one_it_does_not_hold(tmp_path: Path):
    out = tmp_path / "record.json"
    earlier_record(out)
    common = ["--preset", "smoke", "--work", str(tmp_path / "work"), "--out", str(out), "--resume"]
    bench.main(common + ["--plan", "compare:agent_8:agent_8_x4"])
    test = json.loads(out.read_text())["mcnemar"]["agent_8 vs agent_8_x4"]
    assert (test["a_only"], test["b_only"], test["n"]) == (1, 1, 4)  # 1100 vs 0110
    with pytest.raises(SystemExit, match="no per-item outcomes for agent_9"):
        bench.main(common + ["--plan", "compare:agent_8:agent_9"])


def test_a_setting_whose_training_was_resumed_counts_the_killed_processes_training_time(tmp_path: Path, monkeypatch):
    """A student trained over several processes (killed, resumed from a checkpoint) records the
    training time of all of them in ``seconds`` and ``train_seconds``, not only the last process's."""
    monkeypatch.setattr(bench.steps, "train_student", lambda name, *a, **k: {
        "name": name, "train_tokens": 100, "final_loss": {}, "train_seconds": 7000.0, "earlier_seconds": 6990.0})
    monkeypatch.setattr(bench.steps, "evaluate", lambda *a, **k: ({"accuracy": 0.5, "correct": 2, "items": 4}, {}))
    args = bench.parse_args(["--preset", "smoke", "--work", str(tmp_path), "--out", str(tmp_path / "r.json")])
    run = bench.new_run(args)
    run.setting("agent_8", lambda: bench.trained_and_evaluated(run, "agent_8", "agent", [], epochs=1, n_problems=8))
    [record] = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert record["train_seconds"] == 7000.0 and 6990.0 <= record["seconds"] < 7100.0
    assert "earlier_seconds" not in record
