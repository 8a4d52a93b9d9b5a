"""Episodes batched per step vs one episode at a time, on the embedded SmolLM2 (hf backend).

    python bench/agent_eval.py --episodes 16 --steps 2 --max-tokens 48 --out agent_eval.json

Both arms run the same episodes (first N GSM8K test questions) through the agent loop on a
fresh cache: "batched" sends each step's requests in one ask (the hf backend decodes them as
one batch of --episodes rows), "sequential" runs one episode after the other with batch
size 1. Reports wall time, episodes/s and generated tokens/s per arm, and the speed-up.
(llama.cpp decodes one sequence at a time, so batching is measured on transformers.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

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
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    spec = f"hf:{locate('smollm2')}"
    tasks = read_tasks(DATA, limit=args.episodes)
    config = AgentConfig(max_steps=args.steps, max_tokens=args.max_tokens)
    batched, sequential = arm(spec, tasks, config, True), arm(spec, tasks, config, False)
    report = {"episodes": args.episodes, "max_steps": args.steps, "max_tokens": args.max_tokens, "teacher": "hf:smollm2 GGUF",
              "batched": batched, "sequential": sequential,
              "speedup_episodes_per_s": round(batched["episodes_per_s"] / sequential["episodes_per_s"], 2)}  # fmt: skip
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
