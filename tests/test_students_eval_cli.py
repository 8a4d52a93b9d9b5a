"""symkd train + symkd commonsense eval end to end on the CPU, self-imitation rounds, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from symkd.graphs.triples import add_events, add_triples
from symkd.errors import UserError
from symkd.store.db import Store
from symkd.pipelines.commonsense.evaluate import evaluate_commonsense, select_lines
from symkd.pipelines.commonsense.metrics import METRICS
from tests.conftest import SHARED_DATA

DEV = SHARED_DATA / "atomic2020" / "dev.tsv"
TSV = """PersonX goes jogging @@ xReact\ttired| energized
PersonX goes jogging @@ xNeed\tto put on shoes
PersonX bakes a cake @@ xIntent\tto celebrate| to eat something sweet
knife @@ ObjectUse\tcut bread| slice cheese
PersonX loses PersonX's keys @@ xWant\tto find the keys
"""


def symkd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, timeout=600)


def test_train_then_eval_from_the_command_line(tmp_path: Path, tiny_lm: Path) -> None:
    data = tmp_path / "train.tsv"
    data.write_text(TSV)
    out = tmp_path / "student"
    proc = symkd("train", "--data", str(data), "--base-model", str(tiny_lm), "--out", str(out),
                 "--max-steps", "3", "--batch-size", "4", "--device", "cpu", "-q", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["steps"] == 3 and summary["data"]["examples"] == 8
    scores, gens = tmp_path / "scores.json", tmp_path / "gens.jsonl"
    proc = symkd("eval", "commonsense", "--model", str(out), "--data", str(data), "--out", str(scores),
                 "--save-generations", str(gens), "--max-new-tokens", "4", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "overall" in proc.stdout and "xReact" in proc.stdout
    report = json.loads(scores.read_text())
    assert all(0.0 <= report[m] <= 10.0 for m in METRICS)
    assert set(report["per_relation"]) == {"xReact", "xNeed", "xIntent", "ObjectUse", "xWant"}
    lines = [json.loads(line) for line in gens.read_text().splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"head", "relation", "prediction"}
    assert lines[3]["head"] == "knife" and lines[3]["relation"] == "ObjectUse"
    # `eval commonsense --model STUDENT` put the scores in the student's card
    from huggingface_hub import metadata_load

    split = report["data"]["split"]
    card = (out / "README.md").read_text()
    assert f"| atomic2020-{split} | train.tsv | {split} | bleu1 | {report['bleu1']:.4g} |" in card
    assert str(tmp_path) not in card and str(tmp_path) not in (out / "training.json").read_text()
    results = metadata_load(out / "README.md")["model-index"][0]["results"]
    assert {m["type"] for r in results for m in r["metrics"]} >= set(METRICS)


def test_beam_search_and_db_record(tmp_path: Path, tiny_lm: Path) -> None:
    data = tmp_path / "d.tsv"
    data.write_text(TSV)
    db = tmp_path / "run.db"
    report = evaluate_commonsense(data, model=tiny_lm, num_beams=2, max_new_tokens=3, db=db, progress=False)
    assert report["decoding"]["num_beams"] == 2 and report["counts"]["total"] == 5
    with Store(db) as store:
        rows = store.query("select model, bleu1, rougeL from evaluations")
    assert len(rows) == 1 and rows[0]["bleu1"] == pytest.approx(report["bleu1"])


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, tiny_lm: Path) -> None:
    data = tmp_path / "d.tsv"
    data.write_text(TSV)
    cases = [
        (["eval", "commonsense", "--model", str(tmp_path / "missing"), "--data", str(data)], "no such model folder"),
        (["eval", "commonsense", "--model", str(tiny_lm), "--data", str(tmp_path / "none.tsv")], "no such file"),
        (["eval", "commonsense", "--data", str(data)], "either a student"),
        (["train", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "s")], "no such file"),
        (["train", "--data", str(data), "--out", str(tmp_path / "s"), "--critic", "rules"], "apply to a run DB only"),
    ]
    for args, message in cases:
        proc = symkd(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    pc = tmp_path / "pc.jsonl"  # TRL's conversational prompt-completion with a bad second row
    good = {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "ok"}]}
    pc.write_text(json.dumps(good) + "\n" + json.dumps({**good, "completion": [{"role": "assistant"}]}) + "\n")
    proc = symkd("train", "--data", str(pc), "--out", str(tmp_path / "s"), "--base-model", str(tiny_lm))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{pc}:2: completion[0] needs string 'role' and 'content'" in proc.stderr and "Traceback" not in proc.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("PersonX runs @@ xFeels\ttired\n")
    proc = symkd("eval", "commonsense", "--model", str(tiny_lm), "--data", str(bad))
    assert proc.returncode == 2 and f"{bad}:1" in proc.stderr


def test_train_from_a_run_db_with_a_critic_filter(tmp_path: Path, tiny_lm: Path) -> None:
    db = tmp_path / "run.db"
    with Store(db) as store:
        add_triples(store, [{"head": "PersonX runs", "relation": "xReact", "tail": "tired"},
                            {"head": "PersonX runs", "relation": "xNeed", "tail": "x"}])  # fmt: skip
    empty_filter = symkd("train", "--data", str(db), "--critic", "rules", "--out", str(tmp_path / "s"))
    assert empty_filter.returncode == 2 and "has scored nothing here" in empty_filter.stderr
    proc = symkd("critic", "apply", "--db", str(db), "--critics", "rules", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = symkd("train", "--data", str(db), "--critic", "rules", "--base-model", str(tiny_lm), "--out",
                 str(tmp_path / "s"), "--max-steps", "1", "--eval-fraction", "0", "-q", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["source"]["rows"] == 1  # the 1-character tail was dropped
    with Store(db) as store:
        assert store.scalar("select count(*) from training_runs") == 1


@pytest.mark.skipif(not DEV.exists(), reason="shared ATOMIC2020 dev.tsv not present")
def test_dev_split_parts_are_disjoint_by_head() -> None:
    every, ev, critic = (select_lines(DEV, s) for s in ("all", "eval", "critic"))
    assert len(ev) + len(critic) == len(every)
    assert not {ln.head for ln in ev} & {ln.head for ln in critic}
    with pytest.raises(UserError, match="split must be one of"):
        select_lines(DEV, "test")


def test_self_imitation_round_records_counts_and_scores(tmp_path: Path, tiny_lm: Path) -> None:
    from symkd.pipelines.commonsense.self_imitation import rounds_table, run_rounds
    from symkd.critics.base import apply_critic
    from symkd.critics.registry import load_critic

    data = tmp_path / "eval.tsv"
    data.write_text(TSV)
    heads = ["PersonX goes jogging", "PersonX bakes a cake", "PersonX reads a book"]
    rules = load_critic("rules")
    with Store(tmp_path / "run.db") as store:
        add_events(store, [{"text": h, "source": "seed"} for h in heads])
        add_triples(store, [{"head": h, "relation": r, "tail": t} for h in heads
                            for r, t in (("xReact", "happy"), ("xWant", "to rest for a while"))])  # fmt: skip
        apply_critic(store, rules, progress=False)

        def critics(s: Store) -> None:
            apply_critic(s, rules, progress=False)

        rows = run_rounds(store, rounds=2, critic_names=["rules"], apply_critics=critics,
                          pairs=[(h, "xReact") for h in heads], student_dir=tmp_path / "students",
                          train_options={"base_model": str(tiny_lm), "max_steps": 2, "batch_size": 4, "device": "cpu"},
                          eval_data=data, eval_split="all", samples=2, seed=0, progress=False)  # fmt: skip
        assert [r["round"] for r in rows] == [1, 2]
        assert rows[0]["generator"] == "teacher" and rows[0]["generated"] == 6
        assert rows[1]["generator"] == "student round 1"
        student_rows = store.scalar("select count(*) from triples where source = 'student' and round = 1")
        assert rows[1]["generated"] == student_rows
        scored = store.scalar("select count(*) from critic_scores s join triples t on s.item_id = t.id where t.round = 1")
        assert scored == student_rows  # the same critics saw every student triple
        # the student's Stage ran the run generate(...) ran before it: same kind, config, keys, so the same run id
        from symkd.generation import generate
        from symkd.pipelines.commonsense.self_imitation import StudentStage

        runs = store.query("select id, kind, config from runs where kind like 'self-imitation-%'")
        assert [r["kind"] for r in runs] == ["self-imitation-round-1"]
        config = json.loads(runs[0]["config"])
        assert config["round"] == 1 and config["teacher"]["backend"] == "hf"
        pairs = [(h, "xReact") for h in heads]
        requests = StudentStage(fingerprint=config["student"], samples=2, seed=0, round=1).requests(pairs)
        by_hand = generate(f"hf:{tmp_path / 'students' / 'round-1'}", requests, store, kind="self-imitation-round-1",
                           config={"round": 1, "student": config["student"]}, progress=False, batch_size=16)  # fmt: skip
        assert by_hand.run_id == runs[0]["id"] and by_hand.cached == len(requests)
        assert store.scalar("select count(distinct run_id) from triples where round = 1") == 1
        assert store.scalar("select run_id from triples where round = 1 limit 1") == runs[0]["id"]
        assert store.scalar("select count(*) from training_runs") == 2
        assert store.scalar("select count(*) from evaluations where round is not null") == 2
        table = rounds_table(store)
        assert [r["round"] for r in table] == [1, 2] and table[0]["bleu1"] is not None
        # a rerun trains nothing new and asks the students nothing new (cache + finished folders)
        again = run_rounds(store, rounds=2, critic_names=["rules"], apply_critics=critics,
                           pairs=[(h, "xReact") for h in heads], student_dir=tmp_path / "students",
                           train_options={"base_model": str(tiny_lm), "max_steps": 2, "batch_size": 4, "device": "cpu"},
                           eval_data=None, eval_split="all", samples=2, seed=0, progress=False)  # fmt: skip
        assert [r["training_run"] for r in again] == [r["training_run"] for r in rows]
        assert store.scalar("select count(*) from triples where round = 1") == student_rows
