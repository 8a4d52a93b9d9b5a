"""The LangChain backend: fast tests on langchain-core's fake chat models, one slow test on
``ChatOpenAI`` against the llama.cpp server.

The fakes here subclass ``FakeListChatModel`` / ``GenericFakeChatModel`` to record what they
were called with and to raise chosen exceptions, so each test checks what the backend really
sent and what it made of the answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

import symkd
from symkd.errors import TeacherUnavailable
from symkd.store.db import Store
from symkd.teachers.base import FatalRequestError, RetryableError
from symkd.teachers.langchain_chat import LangChainTeacher, classify
from symkd.teachers.registry import load_teacher
from symkd.teachers.messages import GenerationParams, Message, Request, Response

ROOT = Path(__file__).resolve().parent.parent
SPEC = "langchain:tests.test_langchain_backend:make_fake"


class Recorder(FakeListChatModel):
    """Cycles ``responses``; records every call; raises ``failures`` (in order) first."""

    calls: list[dict[str, Any]] = []
    failures: list[Any] = []
    delays: list[float] = []

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        self.calls.append({"messages": messages, "stop": stop, "kwargs": kwargs})
        if self.failures:
            raise self.failures.pop(0)
        return super()._call(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)


class Tunable(Recorder):
    """Declares the sampling fields a real provider model has, so it receives them."""

    model_name: str = "tunable-1"
    temperature: float = 0.7
    max_tokens: int | None = None
    seed: int | None = None


class Strict(Recorder):
    """Like providers that reject keyword arguments they do not know."""

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        if kwargs:
            raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
        return super()._call(messages, stop=stop, run_manager=run_manager)


class APITimeoutError(Exception):
    """Named like openai's; not a TimeoutError subclass: recognised by name."""


def make_fake() -> FakeListChatModel:
    return FakeListChatModel(responses=["a fake answer"])


NOT_A_MODEL = "just a string"


def make_broken() -> FakeListChatModel:
    raise RuntimeError("no credentials configured")


def make_wrong() -> str:
    return "not a chat model"


def chat(id: str = "c", **params) -> Request:
    messages = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Hi?"),
        Message(role="assistant", content="Hello."),
        Message(role="tool", content='{"temp": 21}'),
        Message(role="user", content="And now?"),
    ]
    return Request(id=id, messages=messages, params=GenerationParams(**params))


def ask(teacher: LangChainTeacher, requests: list[Request]) -> list[Response]:
    return teacher.generate(requests)


def fast(model, **options) -> LangChainTeacher:
    return LangChainTeacher(model, backoff_base=0.01, backoff_max=0.05, **options)


def http_error(cls, status: int, headers: dict | None = None):
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, request=request, headers=headers or {})
    return cls(f"error {status}", response=response, body=None)


# --- conversion -------------------------------------------------------------------------


def test_messages_are_converted_by_role():
    model = Recorder(responses=["ok"])
    (resp,) = ask(fast(model), [chat()])
    assert resp.ok and resp.completions[0].text == "ok"
    sent = model.calls[0]["messages"]
    assert [type(m) for m in sent] == [SystemMessage, HumanMessage, AIMessage, ToolMessage, HumanMessage]
    assert [m.content for m in sent] == ["Be brief.", "Hi?", "Hello.", '{"temp": 21}', "And now?"]


def test_completion_prompt_is_one_human_message():
    model = Recorder(responses=["went swimming"])
    (resp,) = ask(fast(model), [Request(id="p", prompt="PersonX goes to the beach. Then")])
    assert [type(m) for m in model.calls[0]["messages"]] == [HumanMessage]
    assert model.calls[0]["messages"][0].content == "PersonX goes to the beach. Then"
    assert resp.completions[0].text == "went swimming"


def test_params_go_only_to_models_that_declare_them():
    tunable = Tunable(responses=["x"])
    ask(fast(tunable), [chat(temperature=0.2, max_tokens=7, top_p=0.9, seed=3)])
    # top_p is not a field of Tunable, so it is not passed
    assert tunable.calls[0]["kwargs"] == {"temperature": 0.2, "max_tokens": 7, "seed": 3}

    strict = Strict(responses=["fine"])
    (resp,) = ask(fast(strict), [chat(temperature=0.2, max_tokens=7, seed=3, logprobs=True)])
    assert resp.ok, resp.error
    assert strict.calls[0]["kwargs"] == {}


def test_n_samples_ask_n_times_with_successive_seeds():
    model = Tunable(responses=["one", "two", "three"])
    (resp,) = ask(fast(model), [chat(n=3, seed=10)])
    assert [c.text for c in resp.completions] == ["one", "two", "three"]
    assert [call["kwargs"]["seed"] for call in model.calls] == [10, 11, 12]


def test_stop_is_passed_and_applied_to_models_that_ignore_it():
    model = Recorder(responses=["first part. second part"])
    (resp,) = ask(fast(model), [chat(stop=(".", "!"))])
    assert model.calls[0]["stop"] == [".", "!"]
    assert resp.completions[0].text == "first part"
    assert resp.completions[0].finish_reason == "stop"


def test_content_blocks_usage_finish_reason_and_logprobs():
    answer = AIMessage(
        content=[{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
        usage_metadata={"input_tokens": 11, "output_tokens": 2, "total_tokens": 13},
        response_metadata={
            "finish_reason": "length",
            "logprobs": {"content": [{"token": "hi", "logprob": -0.25}, {"token": " there", "logprob": -1.5}]},
        },
    )
    model = GenericFakeChatModel(messages=iter([answer, answer]))
    (resp,) = ask(fast(model), [chat(n=2)])
    assert [c.text for c in resp.completions] == ["hi there", "hi there"]
    assert resp.completions[0].finish_reason == "length"
    assert resp.completions[0].token_logprobs == [-0.25, -1.5]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (22, 4)  # both samples


def test_model_identity():
    assert fast(Tunable(responses=["x"])).model_id.startswith("Tunable:tunable-1#")
    assert fast(make_fake()).model_id.startswith("FakeListChatModel#")
    assert fast(make_fake(), name="my-fake").spec == "langchain:my-fake"
    assert load_teacher(SPEC).model_id == fast(make_fake()).model_id  # same identity as the instance


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc, kind",
    [
        (TimeoutError("read timed out"), RetryableError),
        (APITimeoutError("Request timed out."), RetryableError),
        (ConnectionResetError("reset by peer"), RetryableError),
        (httpx.ConnectError("refused"), RetryableError),
        (openai.APIConnectionError(request=httpx.Request("POST", "http://x")), RetryableError),
        (http_error(openai.RateLimitError, 429), RetryableError),
        (http_error(openai.InternalServerError, 503), RetryableError),
        (RuntimeError("Event loop is closed"), RetryableError),
        (http_error(openai.BadRequestError, 400), FatalRequestError),
        (http_error(openai.AuthenticationError, 401), FatalRequestError),
        (ValueError("context too long"), FatalRequestError),
        (RuntimeError("something else"), FatalRequestError),
        (KeyError("choices"), FatalRequestError),
    ],
)
def test_classify(exc, kind):
    assert isinstance(classify(exc), kind)


def test_classify_honours_retry_after():
    error = classify(http_error(openai.RateLimitError, 429, {"retry-after": "0.25"}))
    assert isinstance(error, RetryableError) and error.retry_after == pytest.approx(0.25)
    assert "HTTP 429" in error.reason


@pytest.mark.parametrize(
    "failure", [TimeoutError("slow"), APITimeoutError("slow"), http_error(openai.RateLimitError, 429)]
)
def test_retryable_error_is_retried_then_succeeds(failure):
    model = Recorder(responses=["after retry"], failures=[failure])
    (resp,) = ask(fast(model), [chat()])
    assert resp.ok, resp.error
    assert resp.completions[0].text == "after retry"
    assert resp.attempts == 2 and len(model.calls) == 2


def test_hanging_call_times_out_and_is_retried():
    model = Recorder(responses=["in time"], delays=[5.0])
    (resp,) = ask(fast(model, timeout=0.3), [chat()])
    assert resp.ok and resp.completions[0].text == "in time"
    assert resp.attempts == 2


def test_retries_run_out():
    model = Recorder(responses=["never"], failures=[TimeoutError("slow")] * 3)
    (resp,) = ask(fast(model, max_retries=2), [chat()])
    assert not resp.ok
    assert resp.error.startswith("gave up after 3 attempts: TimeoutError: slow")


def test_fatal_error_is_recorded_in_the_db_and_a_rerun_retries(db_path):
    bad = Recorder(responses=["unused"], failures=[ValueError("prompt is too long for this model")] * 2)
    requests = [chat("a"), chat("b", temperature=0.5)]
    summary = symkd.generate(fast(bad, name="same-model"), requests, db_path, progress=False)
    assert (summary.done, summary.failed) == (0, 2)
    assert len(bad.calls) == 2  # not retried
    with Store(db_path, create=False) as store:
        rows = store.query("select status, error, attempts from responses")
    assert len(rows) == 2
    assert all(r["status"] == "failed" and r["attempts"] == 1 for r in rows)
    assert all(r["error"] == "ValueError: prompt is too long for this model" for r in rows)
    assert all(r["error"] for r in symkd.run_results(db_path, summary.run_id))

    good = Recorder(responses=["recovered"])
    again = symkd.generate(fast(good, name="same-model"), requests, db_path, progress=False)
    assert (again.done, again.failed, again.cached) == (2, 0, 0)
    assert [r["completions"] for r in symkd.run_results(db_path, again.run_id)] == [["recovered"]] * 2


def test_api_keys_never_reach_the_failure_record():
    class KeyedFake(Recorder):
        api_key: Any = None

    from pydantic import SecretStr

    model = KeyedFake(
        responses=["x"], api_key=SecretStr("hunter2-secret"), failures=[ValueError("bad key hunter2-secret")]
    )
    (resp,) = ask(fast(model), [chat()])
    assert not resp.ok
    assert "hunter2-secret" not in resp.error and "***" in resp.error


# --- specs ------------------------------------------------------------------------------


def test_spec_string_generates_and_shares_the_cache_with_the_instance(db_path):
    requests = [chat("a"), Request(id="p", prompt="Once upon a time")]
    first = symkd.generate(SPEC, requests, db_path, progress=False)
    assert (first.done, first.failed) == (2, 0)
    results = symkd.run_results(db_path, first.run_id)
    assert [r["completions"] for r in results] == [["a fake answer"]] * 2

    again = symkd.generate(fast(make_fake()), requests, db_path, progress=False)
    assert (again.cached, again.done) == (2, 0)


@pytest.mark.parametrize(
    "target, message",
    [
        ("nocolon", "use langchain:package.module:attr"),
        ("tests.no_such_module:x", "cannot import tests.no_such_module"),
        ("tests.test_langchain_backend:missing", "has no 'missing'"),
        ("tests.test_langchain_backend:NOT_A_MODEL", "is a str, not a chat model"),
        ("tests.test_langchain_backend:make_broken", "make_broken() failed: RuntimeError: no credentials"),
        ("tests.test_langchain_backend:make_wrong", "returned str, not a BaseChatModel"),
    ],
)
def test_bad_spec_is_one_clear_error(target, message):
    with pytest.raises(TeacherUnavailable) as info:
        load_teacher(f"langchain:{target}")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_instance_must_be_a_chat_model():
    with pytest.raises(TeacherUnavailable, match="needs a BaseChatModel"):
        LangChainTeacher(object())  # type: ignore[arg-type]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_cli_with_a_spec(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = run_cli("generate", "--teacher", SPEC, "--prompts", "prompts/examples/quickstart.jsonl",
                   "--db", str(tmp_path / "x.db"), "--out", str(out), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8 and all(line["status"] == "ok" for line in lines)
    # the template's stop ["\n"] and the completions' stop [".", "\n"] cut nothing here
    assert {line["completions"][0] for line in lines} == {"a fake answer"}

    bad = run_cli("generate", "--teacher", "langchain:tests.no_such_module:x", "--prompts",
                  "prompts/examples/quickstart.jsonl", "--db", str(tmp_path / "y.db"))  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cannot import tests.no_such_module" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "y.db").exists()


# --- a real model over HTTP ---------------------------------------------------------------


@pytest.mark.slow
def test_chat_openai_against_llama_server(llama_server, tmp_path):
    from langchain_openai import ChatOpenAI

    # ChatOpenAI sends max_tokens as "max_completion_tokens", which llama-cpp-python's server
    # ignores (it would generate up to n_ctx); extra_body puts a "max_tokens" it reads.
    model = ChatOpenAI(
        base_url=llama_server.base_url,
        api_key="x",
        model=llama_server.model,
        max_retries=0,
        extra_body={"max_tokens": 16},
    )
    teacher = LangChainTeacher(model, concurrency=2, timeout=120, backoff_base=0.05)
    assert teacher.model_id.startswith("ChatOpenAI:smollm2#")
    db = tmp_path / "lc.db"
    requests = [
        Request(id="chat", messages=[Message(role="user", content="Name a fruit.")],
                params=GenerationParams(max_tokens=16, temperature=0, logprobs=True)),
        Request(id="prompt", prompt="The sky is", params=GenerationParams(max_tokens=16, temperature=0)),
        Request(id="two", messages=[Message(role="user", content="Name a colour.")],
                params=GenerationParams(max_tokens=16, temperature=1.0, n=2, seed=4)),
    ]  # fmt: skip

    before = llama_server.posts("chat/completions")
    first = symkd.generate(teacher, requests, db, progress=False)
    assert (first.done, first.failed) == (3, 0)
    assert llama_server.posts("chat/completions") - before == 4  # n=2 asked twice
    with Store(db, create=False) as store:
        rows = {r["key"]: r for r in store.query("select * from responses")}
    results = {r["id"]: r for r in symkd.run_results(db, first.run_id)}
    assert all(r["status"] == "ok" and all(t.strip() for t in r["completions"]) for r in results.values())
    assert len(results["two"]["completions"]) == 2
    chat_completions = json.loads(rows[results["chat"]["key"]]["completions"])
    # top_logprobs=0 goes with logprobs, so llama.cpp returns chat logprobs here
    assert chat_completions[0]["token_logprobs"] and all(x <= 0 for x in chat_completions[0]["token_logprobs"])
    assert rows[results["chat"]["key"]]["completion_tokens"] > 0

    # a second run (new event loop) answers from the cache and sends nothing...
    before = llama_server.posts()
    again = symkd.generate(teacher, requests, db, progress=False)
    assert (again.cached, again.done) == (3, 0) and llama_server.posts() == before
    # ...and a new item still works with the same ChatOpenAI in yet another event loop
    extra = Request(
        id="extra", messages=[Message(role="user", content="Say hi.")], params=GenerationParams(max_tokens=8)
    )
    third = symkd.generate(teacher, [*requests, extra], db, progress=False)
    assert (third.done, third.cached, third.failed) == (1, 3, 0)
