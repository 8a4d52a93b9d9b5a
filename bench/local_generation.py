"""Tokens/s of the embedded SmolLM2 on the local backends: hf batched vs one at a time, llama.cpp.

Run under the shared benchmark lock so benchmarks do not overlap::

    flock /tmp/symkd-bench.lock python bench/local_generation.py [--max-tokens 32] [--threads N]

The same 16 chat prompts, greedy (temperature 0), the same ``max_tokens`` in every mode.
Tokens are the tokens each mode actually generated (``usage.completion_tokens``); a row that
ends early still occupies its batch slot, which the batched figure honestly pays for.
Loading and one warm-up call per backend are outside the timings.

One CPU thread per backend by default: on the small shared machines this project runs on,
two OpenMP threads spin against other processes' work and every step slows down many-fold
(``--threads 0`` keeps the libraries' own defaults).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench._record import record
from symkd.teachers.embedded import locate
from symkd.teachers.messages import GenerationParams, Message, Request

TOPICS = [
    "why the sky is blue", "how bees make honey", "what causes rain", "how a bicycle stays upright",
    "why leaves change colour", "how vaccines work", "what a black hole is", "how bread rises",
    "why the sea is salty", "how magnets work", "what causes thunder", "how plants drink water",
    "why we sleep", "how airplanes fly", "what an echo is", "how rainbows form",
]  # fmt: skip


def requests(max_tokens: int) -> list[Request]:
    params = GenerationParams(max_tokens=max_tokens, temperature=0)
    return [
        Request(id=f"q{i}", messages=[Message(role="user", content=f"Explain {t} in a few sentences.")], params=params)
        for i, t in enumerate(TOPICS)
    ]


def timed(fn) -> tuple[list, float]:
    began = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - began


def mode(responses: list, seconds: float) -> dict:
    failed = [r.error for r in responses if not r.ok]
    if failed:
        raise SystemExit(f"generation failed: {failed[0]}")
    tokens = sum(r.usage.completion_tokens for r in responses)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both backends; 0 = their defaults")
    ap.add_argument("--no-write", action="store_true", help="print the JSON line only")
    args = ap.parse_args()

    import torch

    from symkd.teachers.hf import HFTeacher
    from symkd.teachers.llamacpp import LlamaCppTeacher

    if args.threads:
        torch.set_num_threads(args.threads)
    model = str(locate("smollm2"))
    reqs = requests(args.max_tokens)
    warm = [Request(id="w", prompt="Hello", params=GenerationParams(max_tokens=4, temperature=0))]
    load_avg = os.getloadavg()[0]

    hf, load_hf = timed(lambda: HFTeacher(model, batch_size=len(reqs)))
    _, load_s = timed(hf.load)
    hf.generate_batch(warm)
    batched = mode(*timed(lambda: hf.generate_batch(reqs)))
    single = mode(*timed(lambda: [hf.generate_batch([r])[0] for r in reqs]))

    lc = LlamaCppTeacher(model, n_threads=args.threads)
    _, lc_load_s = timed(lc.load)
    lc.generate_batch(warm)
    llama = mode(*timed(lambda: lc.generate_batch(reqs)))

    result = {"model": "smollm2 (SmolLM2-135M-Instruct Q4_1 GGUF)", "prompts": len(reqs), "max_tokens": args.max_tokens}
    result["decoding"] = "greedy (temperature 0)"
    result["torch_threads"] = torch.get_num_threads()
    result["llamacpp_threads"] = lc.n_threads
    result["load_average_at_start"] = round(load_avg, 2)
    result["hf_load_s"] = round(load_s + load_hf, 1)
    result["llamacpp_load_s"] = round(lc_load_s, 2)
    for name, m in (("hf_batch16", batched), ("hf_one_at_a_time", single), ("llamacpp", llama)):
        for key, value in m.items():
            result[f"{name}_{key}"] = value
    result["hf_batch_speedup"] = round(batched["tokens_per_s"] / single["tokens_per_s"], 2)
    result["hf_batch16_vs_llamacpp"] = round(batched["tokens_per_s"] / llama["tokens_per_s"], 2)
    notes = (
        "Tokens/s = generated tokens / wall seconds for all 16 prompts; one warm-up call per backend "
        "and model loading are not timed. hf one-at-a-time uses the same teacher with one request per "
        "`generate_batch` call. llama.cpp decodes one sequence at a time. The machine is shared: "
        "`load_average_at_start` shows how busy it was."
    )
    record("local_generation", result, title="Local generation: hf batched vs one at a time, llama.cpp", notes=notes,
           write=not args.no_write)


if __name__ == "__main__":
    main()
