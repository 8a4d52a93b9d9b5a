"""Episodes batched per step vs one episode at a time, on the embedded SmolLM2 (hf backend).

    python bench/agent_eval.py --episodes 16 --steps 2 --max-tokens 96

Both arms run the same episodes (first N GSM8K test questions) through the agent loop on a
fresh cache: "batched" sends each step's requests in one ask (the hf backend decodes them as
one batch of --episodes rows), "sequential" runs one episode after the other with batch
size 1. Both arms reuse the shared few-shot prefix (the hf backend's prefix cache keeps the
last one across calls, so the sequential arm prefills it once too). Reports wall time,
episodes/s and generated tokens/s per arm, and the speed-up; records the ``agent_eval``
section of BENCHMARKS.md (``--no-write`` only prints). 96 new tokens per step is the
acceptance run's setting. (llama.cpp decodes one sequence at a time, so batching is
measured on transformers.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record  # noqa: E402

from symkd.pipelines.agents.agent import solve
from symkd.pipelines.agents.gsm8k import read_tasks
from symkd.pipelines.agents.loop import AgentConfig
from symkd.session import TeacherSession
from symkd.store.db import Store
from symkd.teachers.embedded import locate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def arm(spec: str, tasks: list, config: AgentConfig, batched: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "b.db") as store:
        options = {"batch_size": len(tasks) if batched else 1}
        with TeacherSession(spec, store, options=options, progress=False) as session:
            solve(session, tasks[:1], AgentConfig(max_steps=1, max_tokens=4), progress=False)  # load + warm up
            started = time.perf_counter()
            groups = [tasks] if batched else [[t] for t in tasks]
            episodes = [e for g in groups for e in solve(session, g, config, progress=False)[0]]
            seconds = time.perf_counter() - started
    tokens = sum(e.completion_tokens for e in episodes)
    return {"seconds": round(seconds, 2), "episodes_per_s": round(len(episodes) / seconds, 4),
            "tokens_per_s": round(tokens / seconds, 2), "completion_tokens": tokens,
            "steps": sum(len(e.steps) for e in episodes)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    spec = f"hf:{locate('smollm2')}"
    tasks = read_tasks(DATA, limit=args.episodes)
    config = AgentConfig(max_steps=args.steps, max_tokens=args.max_tokens)
    batched, sequential = arm(spec, tasks, config, True), arm(spec, tasks, config, False)
    report = {"episodes": args.episodes, "max_steps": args.steps, "max_tokens": args.max_tokens, "teacher": "hf:smollm2 GGUF",
              **{f"batched_{k}": v for k, v in batched.items()},
              **{f"sequential_{k}": v for k, v in sequential.items()},
              "speedup_episodes_per_s": round(batched["episodes_per_s"] / sequential["episodes_per_s"], 2)}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    command = f"python bench/agent_eval.py --episodes {args.episodes} --steps {args.steps} --max-tokens {args.max_tokens}"
    record("agent_eval", report, title="Agents: episodes batched per step vs one at a time (bench/agent_eval.py)",
           write=not args.no_write, notes=(
               f"Command: `{command}`. Embedded SmolLM2-135M on the transformers backend (GGUF dequantised, "
               "fp32, CPU), the first N GSM8K test questions, few-shot CodeAct prompt (~340 prompt tokens at step 1), "
               "greedy. Both arms reuse the shared few-shot prefix and decode into a pre-allocated (static) "
               "key/value cache; `batched` asks each step's requests at once (one batch of N rows), `sequential` "
               "runs one episode after the other at batch 1. Target: speed-up >= 4x at 16 episodes."))  # fmt: skip


if __name__ == "__main__":
    main()
