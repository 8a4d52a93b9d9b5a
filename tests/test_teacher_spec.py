"""Issue 18 §2: the teacher is parsed once into a TeacherSpec and handed down.

Counts the real ``registry.parse_spec`` calls across a generation, a three-stage session, an
agents evaluation against the loopback OpenAI-compatible server and the Ray executor's
identity (Ray is not started for it).
"""

from __future__ import annotations

import json
import pickle

import pytest

import symkd
from symkd.errors import UserError
from symkd.session import TeacherSession, is_heavy
from symkd.store.db import Store
from symkd.teachers import registry
from symkd.teachers.registry import teacher_spec
from symkd.teachers.messages import GenerationParams, Request


@pytest.fixture
def parses(monkeypatch):
    """Every spec string the real parser is given, in order."""
    calls: list[str] = []
    real = registry.parse_spec
    monkeypatch.setattr(registry, "parse_spec", lambda spec: calls.append(spec) or real(spec))
    return calls


BUILT: list[int] = []


def counted_model():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    BUILT.append(1)
    return FakeListChatModel(responses=["counted"])


def prompts(n: int = 2) -> list[Request]:
    return [Request(id=f"p{i}", prompt=f"item {i}", params=GenerationParams(max_tokens=4)) for i in range(n)]


def test_a_spec_is_its_text_and_carries_what_was_parsed(fake_openai):
    spec = teacher_spec(" openai:fake ", base_url=fake_openai.base_url)
    assert isinstance(spec, str) and spec == "openai:fake" and json.dumps({"t": spec}) == '{"t": "openai:fake"}'
    assert (spec.backend, spec.model, spec.heavy) == ("openai", "fake", False)
    assert spec.identity == ("openai", f"fake@{fake_openai.base_url}")
    assert teacher_spec(spec) is spec and spec.with_options({"base_url": None}) is spec
    copy = pickle.loads(pickle.dumps(spec))
    assert (copy, copy.backend, copy.options) == (spec, "openai", {"base_url": fake_openai.base_url})
    assert is_heavy(spec) is False


def test_bad_teacher_values_are_one_line():
    with pytest.raises(UserError, match="unknown teacher spec 'nope:x'"):
        teacher_spec("nope:x")
    with pytest.raises(UserError, match="not int"):
        teacher_spec(3)


def test_generation_and_a_session_parse_the_spec_once(fake_openai, db_path, parses):
    symkd.generate("openai:fake", prompts(), db_path, progress=False, base_url=fake_openai.base_url)
    assert parses == ["openai:fake"]
    parses.clear()
    with Store(db_path) as store, TeacherSession("openai:fake", store, {"base_url": fake_openai.base_url},
                                                 progress=False) as session:  # fmt: skip
        for stage in ("a", "b", "c"):
            session.ask(prompts(3), kind="generate", config={}, stage=stage)
    assert parses == ["openai:fake"]
    assert session.stages["c"]["cached"] == 3


def test_an_agents_evaluation_parses_the_spec_once(fake_openai, tmp_path, parses):
    from symkd.pipelines.agents.loop import AgentConfig
    from symkd.pipelines.agents.pipeline import evaluate

    data = tmp_path / "tasks.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(2)))
    metrics = evaluate("openai:fake", data, tmp_path / "e.db", config=AgentConfig(max_steps=2),
                       teacher_options={"base_url": fake_openai.base_url}, progress=False)  # fmt: skip
    assert metrics["items"] == 2 and metrics["teacher"] == "openai:fake"
    assert parses == ["openai:fake"]


def test_the_ray_executor_reads_the_spec_it_is_given(fake_openai, parses):
    pytest.importorskip("ray")
    from symkd.scale.ray_executor import RayExecutor

    spec = teacher_spec("openai:fake", base_url=fake_openai.base_url)
    parses.clear()
    executor = RayExecutor(workers=2)  # Ray starts on first use; _identity does not use it
    identity, record = executor._identity(spec)
    assert identity == spec.identity and record["model"] == "fake" and parses == []
    assert executor.started is False
    replicated = RayExecutor(replicas=["http://a:1/v1", "http://b:2/v1"], endpoint_group="g")
    assert replicated._identity(teacher_spec("openai:fake"))[0] == ("openai", "fake@group:g")
    with pytest.raises(UserError, match="only openai-compatible"):
        replicated._identity(teacher_spec("smollm2"))


def test_a_langchain_factory_is_built_once_for_a_spec_and_its_option_copies(db_path):
    BUILT.clear()
    spec = teacher_spec("langchain:tests.test_teacher_spec:counted_model")
    judge, main = spec.with_options({"concurrency": 2}), spec.with_options({"concurrency": 4})
    assert judge.identity == main.identity == spec.identity  # concurrency is no part of the identity
    assert judge.load().chat_model is main.load().chat_model is spec.chat_model()
    with Store(db_path) as store:
        for session_spec in (judge, main):
            with TeacherSession(session_spec, store, progress=False) as session:
                session.ask(prompts(), kind="generate", config={}, stage="s")
    assert BUILT == [1]
