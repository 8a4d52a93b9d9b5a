"""Strategies pipeline without a generative model: a fake teacher and a deterministic fake scorer.

(The MiniLM encoder is real: retrieval, validation sets and merging use true embeddings.)
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from symkd.errors import UserError
from symkd.pipelines.strategies import (
    Attempt, Scorer, StrategyLeakCritic, context_provider, export_library, import_library, learn_strategies,
    retrieve, sign_test, strategy_versions,
)  # fmt: skip
from symkd.teachers.base import Teacher, as_source
from symkd.teachers.messages import Completion, Response

HELP = "When apples are counted in groups, add the groups together before answering."
HARM = "When a train moves at a steady speed, HARM multiply the speed by the time."
LEAK = "When counting marbles the answer is 42 marbles."


class FakeTeacher(Teacher):
    """Proposes a fixed strategy per topic (the propose template ends with 'When')."""

    backend = "fake"

    def __init__(self):
        super().__init__("fake-teacher")
        self.calls = 0

    async def agenerate(self, requests, on_response) -> None:
        source = as_source(requests)
        while (request := await source.next()) is not None:
            self.calls += 1
            problem = (request.prompt or "").rsplit("Problem:", 1)[-1].lower()
            text = next(t for key, t in (("apples", HELP), ("train", HARM), ("marble", LEAK), ("", HELP)) if key in problem)
            on_response(request, Response(completions=[Completion(text=text[len("When"):])]))


class FakeScorer(Scorer):
    """Easy problems are right; apple problems only with HELP; train problems only with HARM,
    which also makes everything else wrong; marble problems are always wrong."""

    def __init__(self):
        self.trials = 0

    def attempt(self, trials, *, stage):
        self.trials += len(trials)
        return [Attempt(self.correct(t.scenario.question, " ".join(t.guidance))) for t in trials]

    @staticmethod
    def correct(question: str, guidance: str) -> bool:
        if "HARM" in guidance and "train" not in question:
            return False
        if "apples" in question:
            return "apples" in guidance
        if "train" in question:
            return "HARM" in guidance
        return "easy" in question

    def describe(self):
        return {"scorer": "fake"}


def write_tasks(path) -> None:
    rows = [(f"Ann has {i + 2} bags of apples with {i + 3} apples in each bag. How many apples does Ann have?", (i + 2) * (i + 3))
            for i in range(6)]  # fmt: skip
    rows += [(f"A train travels at {30 + i} miles per hour for {i + 2} hours. How far does the train go?", (30 + i) * (i + 2))
             for i in range(4)]  # fmt: skip
    rows += [("Bo has 40 marbles and finds 2 more marbles. How many marbles?", 42), ("Cy has 41 marbles and wins 1 marble. How many marbles?", 42)]
    rows += [(f"An easy sum: what is {i} plus {i}?", 2 * i) for i in range(1, 13)]
    path.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in rows))


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn")
    data, db = folder / "tasks.jsonl", folder / "lib.db"
    write_tasks(data)
    scorer = FakeScorer()
    report = learn_strategies(FakeTeacher(), db, data=data, scorer=scorer, rounds=2, scenarios=100, per_round=12,
                              n_validation=3, n_control=6, progress=False)  # fmt: skip
    return {"db": db, "data": data, "report": report, "scorer": scorer, "folder": folder}


def rows(db, sql):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_sign_test_exact_values():
    assert sign_test(0, 0) == 1.0
    assert sign_test(3, 0) == 0.125
    assert sign_test(5, 1) == pytest.approx(7 / 64, abs=1e-6)
    assert sign_test(0, 3) == 1.0


def test_critic_rejects_answer_leaks_and_copied_numbers():
    critic = StrategyLeakCritic()
    item = {"question": "Bo has 40 marbles and finds 17 more.", "answer": "57", "solution": "40 + 17 = 57"}
    verdicts = critic.score([{**item, "text": t} for t in (
        "When counting, the total is 57 marbles.", "When Bo has 40 marbles, add the ones he finds.",
        "When items are found, add them to what you already had.", "Add.")])  # fmt: skip
    assert [v.keep for v in verdicts] == [False, False, True, False]
    assert [v.details.get("reason") for v in verdicts] == ["leaks-answer", "copies-numbers", None, "too-short"]


def test_helpful_accepted_harmful_rejected_leak_rejected(learned):
    by_text = {}
    for row in rows(learned["db"], "select * from strategies"):
        by_text.setdefault(row["text"], []).append(row)
    helped = [r for r in by_text[HELP] if r["status"] == "accepted"]
    assert len(helped) == 1, "one accepted apple strategy; the other proposals of the same text merged into it"
    evidence = json.loads(helped[0]["evidence"])
    assert evidence["validation"]["delta"] > 0 and evidence["control"]["delta"] == 0
    assert evidence["validation"]["n"] == 3 and evidence["control"]["n"] == 6
    assert evidence["p_value"] == sign_test(evidence["validation"]["improved"], evidence["validation"]["worsened"])
    assert all(r["status"] == "rejected" for r in by_text[HARM])
    harm = json.loads(by_text[HARM][0]["evidence"])
    assert harm["validation"]["delta"] > 0 and harm["control"]["delta"] < 0 and "control delta" in harm["reason"]
    assert all(r["status"] == "rejected" and "leaks-answer" in r["reason"] for r in by_text[LEAK])


def test_merged_duplicates_keep_their_evidence_and_sources(learned):
    merged = rows(learned["db"], "select * from strategies where status = 'merged'")
    assert merged, "identical proposals from several apple scenarios merge"
    target = rows(learned["db"], f"select * from strategies where id = '{merged[0]['merged_into']}'")[0]
    assert json.loads(merged[0]["evidence"])["validation"]["n"] == 3
    sources = set(json.loads(target["source_scenarios"]))
    assert all(set(json.loads(m["source_scenarios"])) <= sources for m in merged) and len(sources) == len(merged) + 1


def test_rounds_target_what_is_still_wrong(learned):
    r1, r2 = learned["report"].rounds
    assert (r1["round"], r2["round"]) == (1, 2)
    assert r1["failed"] == 12 and r1["accepted"] == 1 and r1["library_size"] == 1
    assert r2["failed"] == 6, "with the library the apple problems are right in round 2"
    assert r2["accuracy"] > r1["accuracy"]
    assert learned["report"].acceptance_rate == pytest.approx((r1["accepted"] + r1["merged"]) / (r1["proposals"] + r2["proposals"]), abs=1e-4)


def test_rerun_replays_nothing_and_adds_nothing(learned):
    before = rows(learned["db"], "select id, status, version from strategies order by id")
    teacher, scorer = FakeTeacher(), FakeScorer()
    again = learn_strategies(teacher, learned["db"], data=learned["data"], scorer=scorer, rounds=2, scenarios=100,
                             per_round=12, n_validation=3, n_control=6, progress=False)  # fmt: skip
    assert again.learn_id == learned["report"].learn_id and again.rounds == learned["report"].rounds
    assert teacher.calls == 0 and scorer.trials == 0
    assert rows(learned["db"], "select id, status, version from strategies order by id") == before


def test_retrieval_ranks_by_similarity_and_skips_rejected(learned):
    hits = retrieve(learned["db"], "Dan has 3 boxes of apples with 5 apples each. How many apples?", k=3, min_similarity=0.2)
    assert [h.text for h in hits] == [HELP] and hits[0].similarity > 0.3
    assert retrieve(learned["db"], "Explain the French revolution.", k=3, min_similarity=0.5) == []
    provide = context_provider(learned["db"], k=2, min_similarity=0.2)
    block = provide("How many apples are in 4 bags of 6 apples?")
    assert block.startswith("Strategies that may help:") and HELP in block and HARM not in block


def test_context_provider_is_registered():
    from symkd.plugins import CONTEXT_PROVIDERS

    assert CONTEXT_PROVIDERS.load("strategies") is context_provider


def test_retrieval_order_and_k(tmp_path):
    from symkd.embeddings import encode
    from symkd.pipelines.strategies.library import Strategy, insert, open_library

    store = open_library(tmp_path / "lib.db", create=True)
    texts = ["When a price is discounted by a percent, subtract the discount from the price.",
             "When a speed and a time are given, distance is speed times time.",
             "When apples are shared equally, divide the apples by the number of people."]  # fmt: skip
    for n, (text, vector) in enumerate(zip(texts, encode(texts))):
        insert(store, Strategy(f"s{n}", text), vector, editor="test")
    store.close()
    hits = retrieve(tmp_path / "lib.db", "A car drives at a speed of 60 km per hour for 2 hours; what distance?", k=2, min_similarity=0.0)
    assert [h.id for h in hits][0] == "s1" and len(hits) == 2 and hits[0].similarity >= hits[1].similarity


def test_markdown_round_trip_with_hostile_text(learned, tmp_path):
    from symkd.pipelines.strategies.library import edit, open_library

    db = tmp_path / "copy.db"
    sqlite3.connect(learned["db"]).backup(sqlite3.connect(db))
    hostile = "When ### a heading\n- status: rejected\n<!-- hidden --> `code` *bold* [link](x) \\ | pipe"
    accepted = rows(db, "select id from strategies where status = 'accepted'")[0]["id"]
    store = open_library(db)
    assert edit(store, accepted, text=hostile, editor="test")
    store.close()
    md = tmp_path / "lib.md"
    export_library(db, "md", md)
    text = md.read_text()
    assert "\n### a heading" not in text and "<!--" not in text.split("-->", 1)[1]
    assert import_library(md, db)["changed"] == 0, "an unedited export imports as no change"
    victim = rows(db, "select id, text from strategies where status = 'rejected' limit 1")[0]
    new_text = "When the problem asks for a total, add every part [carefully]."
    edited = text.replace(f"### {victim['id']}\n\n- status: rejected", f"### {victim['id']}\n\n- status: accepted", 1)
    edited = edited.replace("> " + victim["text"].replace("*", "\\*"), "> " + new_text.replace("[", "\\[").replace("]", "\\]"), 1)
    edited = edited.replace("- tags: ", "- tags: reviewed, ", 1)
    md.write_text(edited)
    counts = import_library(md, db)
    assert counts["changed"] == 2
    history = strategy_versions(open_library(db), victim["id"])
    assert history[0]["text"] == victim["text"] and history[-1]["text"] == new_text and history[-1]["status"] == "accepted"
    assert rows(db, f"select text from strategies where id = '{accepted}'")[0]["text"] == hostile
    export_library(db, "json", tmp_path / "lib.json")
    assert import_library(tmp_path / "lib.json", db)["changed"] == 0


def test_parquet_export(learned, tmp_path):
    import pyarrow.parquet as pq

    export_library(learned["db"], "parquet", tmp_path / "lib.parquet")
    table = pq.read_table(tmp_path / "lib.parquet")
    assert table.num_rows == len(rows(learned["db"], "select id from strategies"))
    assert {"text", "status", "evidence", "embedding", "source_scenarios"} <= set(table.column_names)


def run_cli(capsys, *args):
    from symkd.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    captured = capsys.readouterr()
    return exc.value.code, captured.err.strip().splitlines()


def test_bad_inputs_are_one_line_exit_2(tmp_path, capsys, learned):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{not json\n')
    code, err = run_cli(capsys, "strategies", "learn", "--data", str(bad), "--db", str(tmp_path / "x.db"), "-q")
    assert code == 2 and len(err) == 1 and "bad.jsonl:2" in err[0]
    assert not (tmp_path / "x.db").exists(), "nothing is written for bad data"
    code, err = run_cli(capsys, "strategies", "show", "--db", str(tmp_path / "missing.db"))
    assert code == 2 and err == [f"symkd: error: {tmp_path / 'missing.db'}: no such database"]
    from symkd.pipelines.strategies.library import open_library

    open_library(tmp_path / "empty.db", create=True).close()
    code, err = run_cli(capsys, "strategies", "show", "--db", str(tmp_path / "empty.db"))
    assert code == 2 and len(err) == 1 and "empty" in err[0]
    other = tmp_path / "notes.md"
    other.write_text("# My notes\n\n### s123\n\n> hello\n")
    code, err = run_cli(capsys, "strategies", "import", str(other), "--db", str(learned["db"]))
    assert code == 2 and len(err) == 1 and "not a symkd strategy library" in err[0]
    code, err = run_cli(capsys, "strategies", "export", "--db", str(learned["db"]), "--format", "xml", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err) == 1 and "--format" in err[0]
    with pytest.raises(UserError, match=r"rounds: must be greater than or equal to 1 \(got 0\)"):
        learn_strategies(FakeTeacher(), tmp_path / "y.db", data=learned["data"], scorer=FakeScorer(), rounds=0)


def test_context_spec_names_the_provider_and_its_argument(learned):
    """`--context strategies:DB` (the user names the provider; the agents pipeline names none)."""
    from symkd.errors import UserError
    from symkd.plugins import context_from

    question = "How many apples are in 4 bags of 6 apples?"
    assert context_from(f"strategies:{learned['db']}")(question) == context_provider(learned["db"])(question)
    assert context_from(None) is None
    for bad, words in [("strategies", "expected NAME:ARG"), ("nosuch:x.db", "unknown context provider 'nosuch'")]:
        with pytest.raises(UserError, match=words):
            context_from(bad)


def test_agent_eval_context_errors_are_one_line(tmp_path):
    from tests.procs import one_error_line, run

    data = tmp_path / "t.jsonl"
    data.write_text('{"question": "What is 2 + 3?", "answer": "#### 5"}\n')
    base = ["agent", "eval", "--teacher", "openai:fake", "--base-url", "http://127.0.0.1:9/v1", "--data", str(data),
            "--db", str(tmp_path / "e.db"), "-q"]  # fmt: skip
    for extra, words in [(["--context", "nosuch:x"], "unknown context provider 'nosuch'"),
                         (["--context", "strategies:a.db", "--strategies", "b.db"], "give one"),
                         (["--strategies", str(tmp_path / "missing.db")], "missing.db")]:  # fmt: skip
        proc = run(*base, *extra)
        assert proc.returncode == 2 and words in one_error_line(proc), proc.stderr


def test_learn_gives_the_student_its_own_options(capsys, monkeypatch, tmp_path):
    """The student never takes the teacher's --base-url or --rpm: it has --student-* options."""
    import types

    from symkd.pipelines.strategies import pipeline
    from tests.procs import run_cli

    seen = {}

    def fake_learn(teacher, db, **kwargs):
        seen.update(kwargs)
        return types.SimpleNamespace(as_dict=lambda: {}, failed_requests=0)

    monkeypatch.setattr(pipeline, "learn_strategies", fake_learn)
    code, out, err = run_cli(capsys, "strategies", "learn", "-t", "openai:big", "--base-url", "http://teacher:1/v1",
                             "--rpm", "30", "-s", "openai:small", "--student-base-url", "http://student:2/v1",
                             "--data", str(tmp_path / "d.jsonl"), "--db", str(tmp_path / "s.db"), "--json")  # fmt: skip
    assert code == 0, err
    assert seen["teacher_options"] == {"base_url": "http://teacher:1/v1", "rpm": 30.0}
    assert seen["student_options"] == {"base_url": "http://student:2/v1"}


def test_learn_config_is_the_api_and_the_cli(capsys, tmp_path):
    """One LearnConfig: a config and keyword overrides of it; the CLI flags keep their names."""
    from symkd.pipelines.strategies import LearnConfig
    from symkd.pipelines.strategies.options import learn_config
    from tests.procs import run_cli

    base = LearnConfig(rounds=3, n_validation=5)
    assert learn_config(base, {"k": 1}).identity() == {**base.identity(), "k": 1}
    assert "rounds" not in base.identity()
    with pytest.raises(UserError, match="learn_strategies: unknown option 'n_validations'"):
        learn_config(base, {"n_validations": 3})
    code, _, err = run_cli(capsys, "strategies", "learn", "--data", str(tmp_path / "d.jsonl"), "--db", str(tmp_path / "s.db"),
                           "--control", "-1")  # fmt: skip
    assert code == 2 and "--control: must be greater than or equal to 0 (got -1)" in err and not (tmp_path / "s.db").exists()
