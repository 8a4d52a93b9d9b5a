"""Agents pipeline: parsing, answer matching, the batched loop and SAG on a fake model, FTS5
search, the verifier, gold-rationale conversion, the observation mask, and CLI errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from symkd.pipelines.agents.actions import parse_action
from symkd.pipelines.agents.agent import first_paragraph, solve
from symkd.pipelines.agents.gsm8k import Task, answers_match, extract_answer
from symkd.pipelines.agents.loop import AgentConfig, choose_by_consistency
from symkd.teachers.messages import Completion, Response, Usage
from tests.procs import run_cli

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"




@dataclass
class _Result:
    items: list
    run_id: str = "fake-run"
    cached: int = 0
    seconds: float = 0.0

    def __iter__(self):
        return iter(self.items)

    def keys(self):
        return {r.id: f"key-{r.id}" for _, r, _ in self.items}


class FakeSession:
    """Answers each request with ``script(request, step)`` -> list of completion texts."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def ask(self, requests, *, kind, config, stage):
        self.calls.append(len(requests))
        step = len(self.calls)
        items = [(r.id, r, Response(completions=[Completion(text=t) for t in self.script(r, step)],
                                    usage=Usage(prompt_tokens=10, completion_tokens=5))) for r in requests]  # fmt: skip
        return _Result([(i, r, resp) for i, r, resp in items])


def _task(i: int, answer: str = "42") -> Task:
    return Task(f"t{i}", f"question {i}?", "", answer)


# ---- parsing and answers --------------------------------------------------------------------


def test_parse_action_variants():
    a = parse_action("Thought: add them\n```python\nx = 1 + 2\nprint(x)\n```\nObservation: 3 (invented)")
    assert a.thought == "add them" and a.code == "x = 1 + 2\nprint(x)"
    assert parse_action("```py\nprint(1)").code == "print(1)"  # unclosed block cut by the stop string
    assert parse_action("just text, no code") is None
    assert parse_action("Thought: x\n```python\n\n```") is None  # empty block


@pytest.mark.parametrize("predicted,reference,ok", [
    ("$1,200.00", "1200", True), ("18.0", "18", True), ("18 dollars.", "18", True), ("50%", "50", True),
    ("-3", "-3", True), ("0.5", ".5", True), ("17", "18", False), (None, "18", False), ("abc", "18", False),
])  # fmt: skip
def test_answers_match_edge_cases(predicted, reference, ok):
    assert answers_match(predicted, reference) is ok


def test_extract_answer_and_first_paragraph():
    assert extract_answer("so 3 + 4 = 7\n#### 7") == "7"
    assert extract_answer("The answer is 12 apples.") == "12 apples."
    assert first_paragraph("First add 2 and 3.\n\nThen double it.\n#### 10") == "First add 2 and 3."
    assert first_paragraph("Add them.\n#### 5") == "Add them."


# ---- the loop on a fake model ----------------------------------------------------------------


def test_episodes_advance_together_and_recover_from_errors():
    def script(request, step):
        if step == 1:
            return ["Thought: start\n```python\ny = undefined_name\n```"]  # raises: the episode goes on
        if step == 2:
            return ["Thought: fix\n```python\ny = 40 + 2\nprint(y)\n```"]
        return ["Thought: done\n```python\nfinal_answer(y)\n```"]

    session = FakeSession(script)
    episodes, stats = solve(session, [_task(i) for i in range(3)], AgentConfig(max_steps=5, sandbox="bwrap"))
    assert session.calls == [3, 3, 3]  # one batched ask per step for all unfinished episodes
    for e in episodes:
        assert e.correct and e.exec_errors == 1 and e.parse_errors == 0 and len(e.steps) == 3
        assert "NameError" in e.steps[0].observation and e.turns[-1]["role"] == "assistant"
        assert e.turns[3]["content"] == "Observation: 42"


def test_step_limit_and_parse_errors_are_counted():
    session = FakeSession(lambda r, s: ["I will not write code"])
    (episode,), _ = solve(session, [_task(0)], AgentConfig(max_steps=2))
    assert episode.hit_step_limit and episode.parse_errors == 2 and episode.final_answer is None


def test_sag_groups_by_output_on_forked_state():
    from symkd.sandbox import Sandbox

    with Sandbox(mode="bwrap") as sb:
        sb.run("x = 0")
        texts = ["```python\nx = 1\nprint(x)\n```", "```python\nx = 2\nprint(x)\n```", "no code",
                 "```python\nx = 2\nprint(x)\n```", "```python\nraise ValueError\n```"]  # fmt: skip
        _, action, result, child, vote = choose_by_consistency(texts, sb)
        assert action.code == "x = 2\nprint(x)" and result.stdout == "2\n" and vote == {"candidates": 5, "parsed": 4, "valid": 3, "groups": 2, "group_size": 2}
        assert child.run("print(x)").stdout == "2\n"
        assert sb.run("print(x)").stdout == "0\n"  # the shared state never ran a candidate
        child.close()


def test_sag_in_the_loop_uses_n_candidates():
    def script(request, step):
        assert request.params.n == 3 and request.params.temperature == 0.4 and request.params.top_p == 0.8
        return ["```python\nfinal_answer(41)\n```", "```python\nfinal_answer(42)\n```", "```python\nfinal_answer(42)\n```"]

    (episode,), _ = solve(FakeSession(script), [_task(0)], AgentConfig(sag=3))
    assert episode.final_answer == "42" and episode.steps[0].vote["group_size"] == 2


def test_tools_run_in_the_parent(tmp_path):
    from langchain_core.tools import tool

    seen = []

    @tool
    def lookup(query: str) -> str:
        """Looks something up."""
        seen.append(query)
        return "forty-two"

    session = FakeSession(lambda r, s: ['```python\nprint(lookup("answer"))\nfinal_answer(42)\n```'])
    (episode,), _ = solve(session, [_task(0)], AgentConfig(), tools=[lookup])
    assert seen == ["answer"] and episode.steps[0].tool_calls[0]["result"] == "forty-two"
    assert "lookup(query)" in episode.base[0]["content"]


# ---- the typed Step: stored form, derived chat turns, old rows -------------------------------

#: a stored ``trajectories.steps`` value exactly as the previous version (plain dicts) wrote it
OLD_STEPS_JSON = (
    '[{"raw": "  I will not write code  ", "thought": null, "code": null, "parse_error": true, "stdout": "", '
    '"error": null, "tool_calls": [], "timed_out": false, "seconds": 0.0, "observation": "Observation: Error: no '
    "Python code block found. Write 'Thought:' and then exactly one code block starting with ```python and ending "
    'with ```."}, '
    '{"raw": "Thought: fix\\n```python\\ny = 40 + 2\\nprint(y)\\n```\\nObservation: made up", "thought": "fix", '
    '"code": "y = 40 + 2\\nprint(y)", "parse_error": false, "stdout": "42\\n", "error": null, "tool_calls": [], '
    '"timed_out": false, "seconds": 0.01, "vote": {"candidates": 2, "parsed": 2, "valid": 2, "groups": 1, '
    '"group_size": 2}, "is_final": false, "restarted": false, "observation": "Observation: 42"}, '
    '{"raw": "Thought: done\\n```python\\nfinal_answer(y)\\n```", "thought": "done", "code": "final_answer(y)", '
    '"parse_error": false, "stdout": "", "error": null, "tool_calls": [], "timed_out": false, "seconds": 0.02, '
    '"is_final": true, "observation": null}]'
)
#: the turns the previous version built by hand for those steps (after the system prompt and question)
OLD_TURNS = [
    {"role": "assistant", "content": "I will not write code"},
    {"role": "user", "content": "Observation: Error: no Python code block found. Write 'Thought:' and then exactly "
                                "one code block starting with ```python and ending with ```."},
    {"role": "assistant", "content": "Thought: fix\n```python\ny = 40 + 2\nprint(y)\n```"},
    {"role": "user", "content": "Observation: 42"},
    {"role": "assistant", "content": "Thought: done\n```python\nfinal_answer(y)\n```"},
]  # fmt: skip


def test_step_round_trips_its_stored_json():
    from symkd.pipelines.agents.step import Step
    from symkd.sandbox.limits import StepResult

    action = parse_action("Thought: add\n```python\nprint(1 + 1)\n```")
    step = Step.ran("Thought: add\n```python\nprint(1 + 1)\n```", action, StepResult(stdout="2\n", seconds=0.5,
                    tool_calls=[{"tool": "t", "result": "r"}]), vote={"candidates": 3})  # fmt: skip
    stored = json.dumps(step.to_dict(), ensure_ascii=False)
    assert Step.from_dict(json.loads(stored)) == step
    assert list(json.loads(stored)) == ["raw", "thought", "code", "parse_error", "stdout", "error", "tool_calls",
                                        "timed_out", "seconds", "vote", "is_final", "restarted", "observation"]  # fmt: skip
    unparsed = Step.unparsed("no code")
    assert "is_final" not in unparsed.to_dict() and Step.from_dict(unparsed.to_dict()) == unparsed
    odd = {**unparsed.to_dict(), "future_key": [1]}  # a key this version does not know is kept
    assert Step.from_dict(odd).to_dict() == odd


def test_step_messages_are_the_hand_built_turns():
    from symkd.pipelines.agents.episode import Episode
    from symkd.pipelines.agents.step import Step
    from symkd.sandbox.limits import StepResult

    episode = Episode(_task(0), 0, [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], "t", "1")
    episode.record(Step.unparsed("  I will not write code  "))
    fix = "Thought: fix\n```python\ny = 40 + 2\nprint(y)\n```\nObservation: made up"
    episode.record(Step.ran(fix, parse_action(fix), StepResult(stdout="42\n", seconds=0.01)))
    oops = "```python\nfinal_answer(y)\nraise ValueError('no')\n```"
    episode.record(Step.ran(oops, parse_action(oops), StepResult(is_final=True, final_answer="42", error="ValueError: no")))
    done = "Thought: done\n```python\nfinal_answer(y)\n```"
    episode.record(Step.ran(done, parse_action(done), StepResult(is_final=True, final_answer="42")), final_answer="42")
    assert episode.conversation() == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, *OLD_TURNS[:4],
        {"role": "assistant", "content": "Thought: \n```python\nfinal_answer(y)\nraise ValueError('no')\n```"},
        {"role": "user", "content": "Observation: ValueError: no"}, OLD_TURNS[4],
    ]  # fmt: skip
    assert (episode.parse_errors, episode.exec_errors, episode.final_answer, episode.done) == (1, 1, "42", True)
    row = episode.to_row(source="teacher", model="m", trajectory_id="x", config={})
    assert row["messages"] == episode.conversation() and row["steps"][0] == json.loads(OLD_STEPS_JSON)[0]


def test_an_old_stored_trajectory_still_loads(tmp_path):
    from symkd.pipelines.agents import tables
    from symkd.pipelines.agents.step import messages_of, steps_of
    from symkd.pipelines.agents.self_train import code_signature
    from symkd.store.db import Store

    base = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    row = {"id": "old", "source": "teacher", "task_id": "t0", "sample": 0, "question": "Q", "reference": "42",
           "model": "m", "final_answer": "42", "correct": 1, "n_steps": 3, "steps": OLD_STEPS_JSON,
           "messages": json.dumps([*base, *OLD_TURNS]), "run_ids": "[]"}  # fmt: skip
    with Store(tmp_path / "old.db") as store:
        tables.write_trajectories(store, [row])
        (loaded,) = tables.read_trajectories(store)
    steps = steps_of(loaded)
    assert [s.parse_error for s in steps] == [True, False, False] and steps[1].vote["group_size"] == 2
    assert steps[2].is_final and steps[2].observation is None and steps[1].restarted is False
    assert json.dumps([s.to_dict() for s in steps]) == OLD_STEPS_JSON  # byte for byte
    assert messages_of(steps) == OLD_TURNS == loaded["messages"][2:]
    assert code_signature(loaded) == "\ny = 40 + 2 print(y)\nfinal_answer(y)"


# ---- search, verifier, gold rationales ------------------------------------------------------


def test_fts5_search_and_index_is_idempotent(tmp_path):
    from symkd.pipelines.agents.corpus import Corpus, index_docs
    from symkd.store.db import Store

    docs = [{"id": "a", "title": "Apples", "text": "An apple costs 2 dollars at the market."},
            {"id": "b", "title": "Trains", "text": "The train leaves at noon."}]  # fmt: skip
    with Store(tmp_path / "c.db") as store:
        assert index_docs(store, docs, corpus="toy", origin="test")["added"] == 2
        assert index_docs(store, docs, corpus="toy", origin="test")["added"] == 0
    corpus = Corpus(tmp_path / "c.db")
    hits = corpus.search("how much does an apple cost?", k=1)
    assert [h["id"] for h in hits] == ["toy:a"]
    assert corpus.search('"); drop table x; -- OR NEAR(') == []  # no FTS5 syntax reaches MATCH
    corpus.close()


def test_verifier_keeps_recovered_and_rejects_the_rest():
    from symkd.pipelines.agents.verifier import VerifierCritic

    base = {"final_answer": "42", "reference": "42", "parse_errors": 0, "hit_step_limit": 0, "exec_errors": 0}
    verdicts = VerifierCritic().score([base, {**base, "exec_errors": 1}, {**base, "final_answer": "41"},
                                       {**base, "parse_errors": 1}, {**base, "hit_step_limit": 1}])  # fmt: skip
    assert [v.keep for v in verdicts] == [True, True, False, False, False]
    assert verdicts[1].details["recovered"] and verdicts[2].details["reasons"] == ["wrong-answer"]


def test_gold_rationales_run_to_the_reference_answer():
    if not (DATA / "train.jsonl").is_file():
        pytest.skip("../shared/data/gsm8k/train.jsonl is absent")
    from symkd.pipelines.agents.agent import base_messages
    from symkd.pipelines.agents.gold import convert
    from symkd.pipelines.agents.gsm8k import read_tasks
    from symkd.prompts import get_template
    from symkd.sandbox import Sandbox

    tasks = read_tasks(DATA / "train.jsonl", limit=200)
    template = get_template("agents/codeact")
    rows, counts = convert(tasks, lambda t: base_messages(template, t.question, few_shot=False), template=template,
                           progress=False)  # fmt: skip
    assert counts["converted"] == len(rows) and len(rows) >= 0.9 * len(tasks)
    for row in rows:  # every converted trajectory, executed again from scratch, reaches the gold answer
        with Sandbox(mode="bwrap") as sb:
            results = [sb.run(step["code"]) for step in row["steps"]]
        assert results[-1].is_final and answers_match(results[-1].final_answer, row["reference"])
        assert all(r.error is None for r in results)


def test_a_conversion_forks_on_past_a_root_that_died():
    """Gold conversion and program variants fork one root per task; a root that dies (here kill
    -9; in a long run its lifetime CPU cap) makes the next fork fail once, and the one after
    restart it. fork_of_root goes on with the restarted root instead of ending the run."""
    import os
    import signal
    import time

    from symkd.pipelines.agents.gold import fork_of_root
    from symkd.sandbox import Sandbox, SandboxError

    with Sandbox(mode="bwrap") as root:
        os.kill(root.pid, signal.SIGKILL)
        time.sleep(0.2)
        with pytest.raises(SandboxError):
            root.fork()  # a plain fork fails once...
        root.fork().close()  # ...and the next one restarts the root
        os.kill(root.pid, signal.SIGKILL)
        time.sleep(0.2)
        child = fork_of_root(root)
        assert child.run("print(6 * 7)").stdout.strip() == "42"
        child.close()


# ---- the observation mask -------------------------------------------------------------------


def test_observation_mask_on_token_labels():
    from symkd.pipelines.agents.export import turn_segments
    from symkd.students.data import IGNORE_INDEX, Example, tokenize
    from symkd.students.modeling import load_tokenizer

    tok = load_tokenizer("smollm2")
    messages = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "Question: 2+2?"},
                {"role": "assistant", "content": "Thought: add\n```python\nprint(2+2)\n```"},
                {"role": "user", "content": "Observation: 4"},
                {"role": "assistant", "content": "Thought: done\n```python\nfinal_answer(4)\n```"}]  # fmt: skip
    segments = turn_segments(tok, messages)
    assert "".join(t for t, _ in segments) == tok.apply_chat_template(messages, tokenize=False)
    out = tokenize(Example("", "", messages=tuple(messages), segments=segments), tok, 512)
    trained = tok.decode([i for i, lab in zip(out.input_ids, out.labels) if lab != IGNORE_INDEX])
    masked = tok.decode([i for i, lab in zip(out.input_ids, out.labels) if lab == IGNORE_INDEX])
    assert "print(2+2)" in trained and "final_answer(4)" in trained and trained.count("<|im_end|>") == 2
    assert "Observation: 4" in masked and "Question: 2+2?" in masked and "Observation" not in trained


# ---- CLI: bad input is one line, exit 2 -------------------------------------------------------


def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q1", "answer": "#### 1"}\n{"question": "q2"}\n')
    code, _, err = run_cli(capsys, "agent", "generate", "--data", str(bad), "--db", str(tmp_path / "r.db"))
    assert code == 2 and err.strip().count("\n") == 0 and "bad.jsonl:2" in err and "'answer'" in err
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "q1", "answer": "#### 1"}\n')
    code, _, err = run_cli(capsys, "agent", "eval", "--teacher", "smollm2", "--data", str(good), "--tools", "calculator",
                           "--db", str(tmp_path / "r.db"))  # fmt: skip
    assert code == 2 and "unknown tool 'calculator'" in err and err.strip().count("\n") == 0
    code, _, err = run_cli(capsys, "agent", "eval", "--model", str(tmp_path / "missing"), "--data", str(good))
    assert code == 2 and "no such model" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "r.db").exists()


def test_cli_gold_export_and_corpus(capsys, tmp_path):
    tasks = tmp_path / "train.jsonl"
    tasks.write_text(json.dumps({"question": "Ann has 3 bags of 4 pens. How many pens?",
                                 "answer": "She has 3*4=<<3*4=12>>12 pens.\n#### 12"}) + "\n")  # fmt: skip
    db = tmp_path / "run.db"
    code, out, _ = run_cli(capsys, "agent", "generate", "--source", "gold-rationales", "--data", str(tasks), "--db", str(db), "-q")
    assert code == 0 and "converted: 1" in out
    code, _, _ = run_cli(capsys, "agent", "export", "--db", str(db), "--out", str(tmp_path / "t.jsonl"))
    record = json.loads((tmp_path / "t.jsonl").read_text())
    assert record["source"] == "gold-rationales" and [m["role"] for m in record["messages"]] == \
        ["system", "user", "assistant", "user", "assistant"]  # fmt: skip
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"title": "pens", "text": "A bag holds 4 pens."}) + "\n")
    code, out, _ = run_cli(capsys, "corpus", "index", str(docs), "--db", str(db))
    assert code == 0 and "1 new of 1" in out
    code, out, _ = run_cli(capsys, "agent", "export-cot", "--data", str(tasks), "--out", str(tmp_path / "cot.jsonl"))
    cot = json.loads((tmp_path / "cot.jsonl").read_text())
    assert cot["messages"][-1]["content"] == "She has 3*4=12 pens.\n#### 12"


def test_agent_config_is_one_validated_model():
    """AgentConfig declares its bounds once: the API's overrides and the CLI flags share them."""
    from symkd.errors import UserError
    from symkd.pipelines.agents.options import agent_config

    config = AgentConfig(max_steps=3, sag=8)
    assert agent_config(config) is config
    assert agent_config(config, {"sandbox": "rlimit"}).as_dict() == {**config.as_dict(), "sandbox": "rlimit"}
    assert "wave" not in config.as_dict() and "workers" not in config.as_dict()  # they change no outcome
    for bad, words in [({"sag": 1}, "x: sag: must be 0 (off) or at least 2"), ({"max_steps": 0}, "x: max_steps: must be"),
                       ({"sandbox": "docker"}, "x: sandbox: must be 'bwrap' or 'rlimit'"),
                       ({"max_stepz": 2}, "x: unknown option 'max_stepz'")]:  # fmt: skip
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            agent_config(config, bad, where="x")
