"""Acceptance for agent distillation on GSM8K, end to end on the embedded SmolLM2-135M.

    python bench/agent_acceptance.py --train 200 --test 40 --max-steps 4 --max-tokens 96 --sag 4 --work /tmp/acc

Trains two students on the same first --train GSM8K train problems: CoT-distilled (worked
solutions as chat, `symkd train` data) and agent-distilled (their gold-rationale CodeAct
trajectories, observations masked), one epoch each, same max length; then evaluates on the
first --test test problems: the base model with CoT and agent prompting, the CoT student,
the agent student, the agent student with SAG, and with `search` over an index of the GSM8K
train problems+solutions. Every number comes out as JSON (with sizes and wall times).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from symkd.pipelines.agents import pipeline
from symkd.pipelines.agents.loop import AgentConfig
from symkd.teachers.embedded import locate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def epoch_tokens(data: Any, max_length: int) -> int:
    """Tokens one epoch of ``data`` feeds the trainer (examples too long for max_length are left out)."""
    from symkd.students.data import tokenize
    from symkd.students.modeling import load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    return sum(len(t.input_ids) for t in (tokenize(ex, tokenizer, max_length) for ex in data.examples) if t is not None)


def train_students(work: Path, n_train: int, max_length: int, record: dict) -> tuple[Path, Path]:
    from symkd.jsonio import atomic_write
    from symkd.pipelines.agents.export import cot_record, training_data
    from symkd.pipelines.agents.gsm8k import read_tasks
    from symkd.pipelines.agents.tables import read_trajectories
    from symkd.store.db import Store
    from symkd.students.data import from_jsonl
    from symkd.students.modeling import load_tokenizer
    from symkd.students.train import TrainConfig, train

    db = work / "train.db"
    record["gold"] = pipeline.convert_gold_rationales(db, DATA / "train.jsonl", limit=n_train, progress=False)
    with Store(db) as store:
        rows = read_trajectories(store, sources=["gold-rationales"])
    solved = {r["task_id"] for r in rows}
    tasks = [t for t in read_tasks(DATA / "train.jsonl", limit=n_train) if t.id in solved]  # the same problems
    with atomic_write(work / "cot.jsonl") as fh:
        for t in tasks:
            fh.write(json.dumps(cot_record(t)) + "\n")
    common = dict(base_model="smollm2", epochs=1.0, batch_size=8, max_length=max_length, eval_fraction=0.0, lr=1e-4)
    agent_data = training_data(rows, load_tokenizer("smollm2"), {"kind": "agent-trajectories", "db": str(db)})
    budget = None  # the CoT student gets the agent student's training-token budget (float epochs)
    for name, data in (("agent", agent_data), ("cot", from_jsonl(work / "cot.jsonl"))):
        started = time.monotonic()
        epochs = common["epochs"] if budget is None else budget / max(1, epoch_tokens(data, max_length))
        config = TrainConfig(out=work / f"student-{name}", **{**common, "epochs": round(epochs, 4)})
        summary = train(data, config, progress=False)
        budget = budget or summary["throughput"]["tokens"]
        record[f"train_{name}"] = {"examples": len(data), "seconds": round(time.monotonic() - started, 1),
                                   "steps": summary.get("total_steps"), "final": summary.get("final"), "epochs": config.epochs,
                                   "throughput": summary.get("throughput"), "too_long": summary["data"].get("too_long")}  # fmt: skip
    return work / "student-agent", work / "student-cot"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--sag", type=int, default=8)
    ap.add_argument("--work", type=Path, default=Path("agent_acceptance"))
    ap.add_argument("--out", type=Path, default=Path("agent_acceptance.json"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    record: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "hardware": platform.processor() or platform.machine(),
                    "evals": {}}  # fmt: skip
    started = time.monotonic()

    def save() -> None:
        record["seconds"] = round(time.monotonic() - started, 1)
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")

    agent_dir, cot_dir = train_students(args.work, args.train, args.max_length, record)
    save()
    from symkd.pipelines.agents.corpus import index_docs
    from symkd.pipelines.agents.gsm8k import read_tasks
    from symkd.pipelines.agents.tools import search_tool
    from symkd.store.db import Store

    with Store(args.work / "corpus.db") as store:
        docs = [{"id": t.id, "title": t.question, "text": t.solution} for t in read_tasks(DATA / "train.jsonl")]
        record["corpus"] = index_docs(store, docs, corpus="gsm8k-train", origin="train.jsonl")
    base = f"hf:{locate('smollm2')}"
    test = DATA / "test.jsonl"
    agent = AgentConfig(max_steps=args.max_steps, max_tokens=args.max_tokens)
    student = AgentConfig(max_steps=args.max_steps, max_tokens=args.max_tokens, few_shot=False)
    runs = {
        "base_cot": (base, "cot", agent, []),
        "base_agent": (base, "agent", agent, []),
        "cot_student": (f"hf:{cot_dir}", "cot", agent, []),
        "agent_student": (f"hf:{agent_dir}", "agent", student, []),
        "agent_student_sag": (f"hf:{agent_dir}", "agent", AgentConfig(**{**student.__dict__, "sag": args.sag}), []),
        "agent_student_search": (f"hf:{agent_dir}", "agent", student, "search"),
    }
    for name, (spec, mode, config, tools) in runs.items():
        tool_list = [search_tool(args.work / "corpus.db")] if tools else []
        metrics = pipeline.evaluate(spec, test, args.work / "eval.db", mode=mode, config=config, limit=args.test,
                                    tools=tool_list, teacher_options={"batch_size": 16}, progress=False,
                                    out=args.work / f"{name}.jsonl")  # fmt: skip
        record["evals"][name] = {k: v for k, v in metrics.items() if k not in ("config", "teacher", "data")}
        print(name, json.dumps(record["evals"][name]), flush=True)
        save()
    save()


if __name__ == "__main__":
    main()
