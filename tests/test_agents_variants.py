"""Program variants of gold-rationale trajectories: the number mapping, recomputation in the real
sandbox, no test leakage (--exclude), determinism given a seed, provenance in the stored rows."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from symkd.errors import UserError
from symkd.pipelines.agents import gold
from symkd.pipelines.agents.gsm8k import Task, answers_match
from symkd.pipelines.agents.variants import (SOURCE, check, implied_values, make_plan, make_variants, normalize_question,
                                             question_numbers, read_exclude, rewrite_code, rewrite_question, run_program)  # fmt: skip
from tests.procs import run_cli

NATALIA = Task("t:1", "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
               "How many clips did Natalia sell altogether in April and May?",
               "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether.", "72")
LETTERS = Task("t:2", "James writes a 3-page letter to 2 different friends twice a week.  How many pages does he write a year?",
               "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\n"
               "That means he writes 12*52=<<12*52=624>>624 pages a year", "624")
PIZZA = Task("t:3", "Albert buys 2 large pizzas and 2 small pizzas. A large pizza has 16 slices and a small pizza has 8 "
             "slices. If he eats it all, how many pieces does he eat?",
             "He eats 2*16=<<2*16=32>>32 from the largs pizzas.\nHe eats 2*8=<<2*8=16>>16 from the small pizzas.\n"
             "He eats 32+16=<<32+16=48>>48 pieces.", "48")
SHOES = Task("t:4", "Alexis had a budget of $200 and spent $30 on a shirt and $46 on pants. She has $16 left. "
             "How much did she pay for the shoes?",
             "She spent 30+46=<<30+46=76>>76.\nShe paid 184-76=<<184-76=108>>108 for the shoes.", "108")  # fmt: skip
TASKS = [NATALIA, LETTERS, PIZZA, SHOES]


def _base(task: Task) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Solve it."}, {"role": "user", "content": task.question}]


def _variants(tasks, k=3, seed=0, exclude=frozenset()):
    from symkd.prompts import get_template

    return make_variants(tasks, _base, template=get_template("agents/codeact"), k=k, seed=seed, exclude=exclude,
                         progress=False)  # fmt: skip


def _values(task: Task):
    from symkd.sandbox import Sandbox

    steps = gold.gold_steps(task)
    with Sandbox() as sb:
        return steps, run_program(sb, steps)


def test_number_mapping_on_known_problems():
    assert [(n.text, n.percent, n.fixed) for n in question_numbers("In 2015, 1 of 12 got 80% and 1/2 at 3:30; $1,200.50.")] == \
        [("2015", False, True), ("1", False, True), ("12", False, False), ("80", True, False), ("1", False, True),
         ("2", False, True), ("3", False, True), ("30", False, True), ("1,200.50", False, False)]  # fmt: skip
    assert {2, 52, 7} <= implied_values(LETTERS.question) and Decimal(3) not in implied_values(LETTERS.question)
    steps, values = _values(LETTERS)
    plan = make_plan(LETTERS.question, steps, values)
    assert set(plan.changeable) == {3}  # 2 stays: "2 friends" and "twice" both give the code a 2
    assert rewrite_question(LETTERS.question, {Decimal(3): Decimal(5)}).startswith("James writes a 5-page letter to 2 ")
    assert rewrite_code(steps[0].code, plan.literal_map({Decimal(3): Decimal(5)})).startswith("pages = 5*2")
    steps, values = _values(NATALIA)
    plan = make_plan(NATALIA.question, steps, values)
    assert set(plan.changeable) == {48} and steps[1].code.startswith("clips_2 = 48+clips")
    assert make_plan(PIZZA.question, *_values(PIZZA)) == "ambiguous_role"  # the 16 after 2*8 is computed, not the question's
    assert make_plan(SHOES.question, *_values(SHOES)) == "unmapped_literal"  # 184 comes from no question number
    assert rewrite_code("x = 80/100*10\ny = x*.8", {Decimal(80): Decimal(60), Decimal("0.8"): Decimal("0.6")}) == \
        "x = 60/100*10\ny = x*0.6"  # fmt: skip


def test_checks_keep_signs_and_integers():
    orig = {"a": Decimal(24), "b": Decimal("0.2"), "c": Decimal(72)}
    assert check(orig, {"a": Decimal(30), "b": Decimal("0.25"), "c": Decimal(90)}, "c") is None
    assert check(orig, {"a": Decimal("24.5"), "b": Decimal("0.2"), "c": Decimal(90)}, "c") == "not_integer"
    assert check(orig, {"a": Decimal(30), "b": Decimal("0.2"), "c": Decimal(-4)}, "c") == "not_positive"


def test_variants_recomputed_in_the_sandbox():
    from symkd.sandbox import Sandbox

    rows, counts = _variants(TASKS, k=3)
    assert counts["problems"] == 4 and counts["admitting"] == 2 and counts["variants"] == len(rows) == 6
    assert counts["skipped"] == {"ambiguous_role": 1, "unmapped_literal": 1}
    natalia = [r for r in rows if r["config"]["parent_task_id"] == "t:1"]
    assert len(natalia) == 3
    for row in natalia:
        new = int(row["config"]["substitution"]["48"])
        assert new != 48 and new % 2 == 0  # 24 clips in May was an integer: so is the new half
        assert int(row["reference"]) == new + new // 2 and f" {new} of her friends" in row["question"]
        assert "48" not in row["question"] and all("48" not in s["thought"] for s in row["steps"][:-1])
        assert row["steps"][-1]["thought"] == f"The answer is {row['reference']}."
        with Sandbox() as sb:  # the stored trajectory, run again from scratch, reaches the new answer
            results = [sb.run(step["code"]) for step in row["steps"]]
        assert results[-1].is_final and answers_match(results[-1].final_answer, row["reference"])
    for row in (r for r in rows if r["config"]["parent_task_id"] == "t:2"):
        pages = int(row["config"]["substitution"]["3"])
        assert int(row["reference"]) == pages * 2 * 2 * 52 and "to 2 different friends twice" in row["question"]


def test_no_test_leakage_and_determinism():
    rows, _ = _variants([NATALIA], k=3, seed=7)
    again, _ = _variants([NATALIA], k=3, seed=7)
    other, _ = _variants([NATALIA], k=3, seed=8)
    key = lambda rs: [(r["question"], r["reference"], r["id"], r["messages"]) for r in rs]  # noqa: E731
    assert key(rows) == key(again) and [r["question"] for r in rows] != [r["question"] for r in other]
    leaked = frozenset(normalize_question(r["question"].upper().replace(".", " . ")) for r in rows[:2])
    kept, counts = _variants([NATALIA], k=3, seed=7, exclude=leaked)
    assert counts["variants_excluded"] >= 2 and len(kept) == 3
    assert not {normalize_question(r["question"]) for r in kept} & leaked
    none, counts = _variants([NATALIA], k=3, exclude=frozenset({normalize_question(NATALIA.question)}))
    assert none == [] and counts["skipped"] == {"parent_excluded": 1}




def test_cli_stores_provenance_and_export_reads_it(capsys, tmp_path):
    from symkd.pipelines.agents.export import chat_record
    from symkd.pipelines.agents.tables import read_trajectories
    from symkd.store.db import Store

    train, test, db = tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "run.db"
    train.write_text("".join(json.dumps({"id": t.id, "question": t.question, "answer": f"{t.solution}\n#### {t.answer}"}) + "\n"
                             for t in TASKS))  # fmt: skip
    test.write_text(json.dumps({"question": " " + LETTERS.question.lower(), "answer": "#### 624"}) + "\n")
    code, out, err = run_cli(capsys, "agent", "generate", "--source", "gold-rationales", "--data", str(train), "--db", str(db),
                              "--variants", "2", "--exclude", str(test), "--seed", "3", "--json", "-q")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["excluded"] == 1 and report["variants"]["variants"] == 2 and report["variants"]["admitting"] == 1
    with Store(db, create=False) as store:
        rows = read_trajectories(store, sources=[SOURCE])
        parents = read_trajectories(store, sources=[gold.SOURCE])
    assert LETTERS.id not in {r["task_id"] for r in parents}  # a test problem is no parent either
    assert [r["task_id"] for r in rows] == ["t:1~v1", "t:1~v2"] and {r["source"] for r in rows} == {SOURCE}
    parent = next(r for r in parents if r["task_id"] == "t:1")
    for row in rows:
        assert row["config"]["parent_task_id"] == "t:1" and row["config"]["parent_trajectory_id"] == parent["id"]
        assert set(row["config"]["substitution"]) == {"48"} and row["config"]["seed"] == 3 and row["correct"] == 1
        record = chat_record(row)
        assert record["source"] == SOURCE and row["question"] in record["messages"][1]["content"]
    code, _, err = run_cli(capsys, "agent", "generate", "--data", str(train), "--db", str(db), "--variants", "2")
    assert code == 2 and "--source gold-rationales" in err and err.strip().count("\n") == 0
    (tmp_path / "bad.jsonl").write_text('{"text": "no question"}\n')
    with pytest.raises(UserError, match="bad.jsonl:1: field 'question'"):
        read_exclude(tmp_path / "bad.jsonl")
