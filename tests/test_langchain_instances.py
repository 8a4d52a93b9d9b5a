"""Issue 20: LangChain chat model instances wherever a spec goes, cache identity from the
model's parameters (never its secrets), a factory built once per run, ``--tools`` found in
the current directory and async-only tools awaited in the parent.

Real parts only: langchain_core's fake chat models, ChatOpenAI against the loopback
OpenAI-compatible server, the real ``symkd agent generate`` command with a real sandbox.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

import symkd
from symkd.store.db import Store
from symkd.teachers import registry
from symkd.teachers.langchain_chat import LangChainTeacher
from symkd.teachers.registry import load_teacher
from symkd.teachers.messages import GenerationParams, Message, Request
from tests.procs import run_cli

SECRET = "sk-lcSecretValue0123456789"


def requests(n: int = 3) -> list[Request]:
    return [Request(id=f"r{i}", messages=[Message(role="user", content=f"question {i}")],
                    params=GenerationParams(max_tokens=8)) for i in range(n)]  # fmt: skip


def answers(db: Path, run_id: str) -> list[list[str]]:
    return [r["completions"] for r in symkd.run_results(db, run_id)]


def test_instance_through_generate_and_load_teacher(db_path):
    model = FakeListChatModel(responses=["from the instance"])
    teacher = load_teacher(model)
    assert isinstance(teacher, LangChainTeacher) and teacher.chat_model is model
    result = symkd.generate(model, requests(), db_path, progress=False)
    assert (result.done, result.failed) == (3, 0)
    assert answers(db_path, result.run_id) == [["from the instance"]] * 3


def test_two_instances_with_different_params_never_share_answers(db_path):
    first = symkd.generate(FakeListChatModel(responses=["A"]), requests(), db_path, progress=False)
    other = symkd.generate(FakeListChatModel(responses=["B"]), requests(), db_path, progress=False)
    assert (other.done, other.cached) == (3, 0)  # no cross-hit
    assert answers(db_path, other.run_id) == [["B"]] * 3
    again = symkd.generate(FakeListChatModel(responses=["A"]), requests(), db_path, progress=False)
    assert (again.done, again.cached) == (0, 3)  # same parameters: the same cache
    assert answers(db_path, again.run_id) == answers(db_path, first.run_id) == [["A"]] * 3
    with Store(db_path, create=False) as store:
        models = {r["model"] for r in store.query("select distinct model from requests")}
    assert len(models) == 2 and all(m.startswith("FakeListChatModel#") for m in models)


def test_chat_openai_params_make_the_identity_and_secrets_stay_out(fake_openai, tmp_path, capsys):
    from langchain_openai import ChatOpenAI

    def chat_openai(temperature: float) -> ChatOpenAI:
        return ChatOpenAI(model="fake", base_url=fake_openai.base_url, api_key=SECRET, max_retries=0,
                          temperature=temperature, default_headers={"X-Api-Key": SECRET})  # fmt: skip

    db = tmp_path / "lc.db"
    cold, warm = chat_openai(0.0), chat_openai(0.9)
    assert load_teacher(cold).model_id != load_teacher(warm).model_id
    assert load_teacher(cold).model_id == load_teacher(chat_openai(0.0)).model_id
    asks = [*requests(2), Request(id="bad", messages=[Message(role="user", content="x #fault=401x9")])]
    first = symkd.generate(cold, asks, db, progress=False, max_retries=0)
    assert (first.done, first.failed) == (2, 1)
    second = symkd.generate(warm, asks[:2], db, progress=False)
    assert (second.done, second.cached) == (2, 0)
    sent = fake_openai.stats()
    assert sent["by_input"]["x #fault=401x9"] == 1  # a 401 is final
    third = symkd.generate(chat_openai(0.0), asks[:2], db, progress=False)
    assert (third.done, third.cached) == (0, 2)
    assert fake_openai.stats()["total"] == sent["total"]  # equal parameters: answered from the cache
    error = symkd.run_results(db, first.run_id)[2]["error"]
    assert "401" in error and SECRET not in error
    for path in tmp_path.glob("lc.db*"):  # the database and any WAL/journal next to it
        assert SECRET.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


def test_one_parse_per_generation(db_path, monkeypatch):
    calls = []
    real = registry.parse_spec
    monkeypatch.setattr(registry, "parse_spec", lambda spec: calls.append(spec) or real(spec))
    spec = "langchain:tests.test_langchain_backend:make_fake"
    symkd.generate(spec, requests(), db_path, progress=False)
    assert calls == [spec]
    calls.clear()
    with symkd.TeacherSession(spec, Store(db_path), progress=False) as session:
        for stage in ("one", "two", "three"):
            session.ask(requests(), kind="generate", config={"stage": stage}, stage=stage)
    assert calls == [spec]


# ---- the agents command: a factory and tools from the current directory ----------------------

MODEL_MODULE = '''
from langchain_core.language_models.fake_chat_models import FakeListChatModel

BUILT = []
STEPS = ["Thought: look it up\\n```python\\nprint(lookup('meaning'))\\n```",
         "Thought: done\\n```python\\nfinal_answer(42)\\n```"]


def make_model():
    BUILT.append(1)
    return FakeListChatModel(responses=STEPS)
'''

TOOL_MODULE = '''
from langchain_core.tools import tool

AWAITED = []


@tool
async def lookup(query: str) -> str:
    """Looks a word up (async only)."""
    AWAITED.append(query)
    return "forty-two"
'''


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """``agent_model_mod`` and ``agent_tools_mod`` in a fresh cwd that is not on sys.path."""
    (tmp_path / "agent_model_mod.py").write_text(MODEL_MODULE)
    (tmp_path / "agent_tools_mod.py").write_text(TOOL_MODULE)
    (tmp_path / "tasks.jsonl").write_text(json.dumps({"question": "What is six times seven?", "answer": "#### 42"}) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("agent_model_mod", "agent_tools_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("agent_model_mod", "agent_tools_mod"):
        sys.modules.pop(name, None)


def test_agent_generate_builds_the_factory_once_and_awaits_an_async_tool(user_modules, capsys, monkeypatch):
    calls = []
    real = registry.parse_spec
    monkeypatch.setattr(registry, "parse_spec", lambda spec: calls.append(spec) or real(spec))
    code, out, err = run_cli(capsys, "agent", "generate", "--teacher", "langchain:agent_model_mod:make_model",
                             "--tools", "agent_tools_mod:lookup", "--data", "tasks.jsonl", "--db", "run.db",
                             "--max-steps", "3", "--quiet", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert (report["written"], report["correct"], len(report["steps"])) == (1, 1, 2)
    assert sys.modules["agent_model_mod"].BUILT == [1]  # two steps, one model
    assert sys.modules["agent_tools_mod"].AWAITED == ["meaning"]
    assert calls == ["langchain:agent_model_mod:make_model"]  # parsed once for the whole run
    with Store(user_modules / "run.db", create=False) as store:
        (row,) = store.query("select steps from trajectories")
    first = json.loads(row["steps"])[0]
    assert first["tool_calls"][0]["result"] == "forty-two" and "forty-two" in first["stdout"]


def test_a_missing_tool_module_is_one_line(user_modules, capsys):
    code, _, err = run_cli(capsys, "agent", "generate", "--teacher", "langchain:agent_model_mod:make_model",
                           "--tools", "no_such_tools_mod:x", "--data", "tasks.jsonl", "--db", "run.db")  # fmt: skip
    assert code == 2 and "cannot import no_such_tools_mod" in err and err.strip().count("\n") == 0


def test_pipeline_api_takes_an_instance_and_parses_a_spec_once(db_path, tmp_path, monkeypatch):
    from tests.test_commonsense_pipeline import SEEDS

    kw = dict(seeds=SEEDS, n_events=2, relations="physical", critics=(), progress=False)
    report = symkd.distill_commonsense(FakeListChatModel(responses=["a cup"]), db_path, **kw)
    assert report["inferences"]["tails"] > 0
    calls = []
    real = registry.parse_spec
    monkeypatch.setattr(registry, "parse_spec", lambda spec: calls.append(spec) or real(spec))
    spec = "langchain:tests.test_langchain_backend:make_fake"
    again = symkd.distill_commonsense(spec, tmp_path / "spec.db", **kw)
    assert again["inferences"]["tails"] > 0 and calls == [spec]
