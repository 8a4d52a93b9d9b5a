"""The steps of bench/agent_acceptance.py: data selection, training to a budget, evaluation.

Each function does one thing a user could also do with the CLI (named in its docstring), so
the acceptance numbers are reproducible with plain commands.
"""

from __future__ import annotations

import gc
import json
import platform
import time
from pathlib import Path
from typing import Any, Sequence

from symkd.memory import release_freed_heap
from symkd.pipelines.agents import pipeline
from symkd.pipelines.agents.evaluation import paired_outcomes
from symkd.pipelines.agents.export import cot_record, training_data
from symkd.pipelines.agents.gsm8k import Task, read_tasks
from symkd.pipelines.agents.loop import AgentConfig
from symkd.pipelines.agents.tables import read_predictions, read_trajectories
from symkd.store.db import Store


def hardware(device: str) -> str:
    """The accelerator's name, else the CPU model (with whether it has AVX512-BF16)."""
    try:
        import torch

        if device != "cpu" and torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    except ImportError:
        pass
    cpu, bf16 = platform.processor() or platform.machine(), False
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), cpu)
        bf16 = "avx512_bf16" in info
    except OSError:
        pass
    import os

    return f"{os.cpu_count()} CPU cores ({cpu}{', AVX512-BF16' if bf16 else ', no AVX512-BF16'})"


def gold_rows(db: Path, tasks: Sequence[Task], sources: Sequence[str] = ("gold-rationales",)) -> list[dict[str, Any]]:
    """Trajectories of ``sources`` whose task (or, for variants, parent task) is one of ``tasks``.

    CLI: ``symkd agent train --db DB --source gold-rationales --limit N`` (first N problems).
    """
    wanted = {t.id for t in tasks}
    with Store(db) as store:
        rows = read_trajectories(store, sources=list(sources))
    return [r for r in rows if _parent(r) in wanted]


def _parent(row: dict[str, Any]) -> str:
    config = row.get("config") or {}
    return config.get("parent_task_id") or row.get("parent_task_id") or row["task_id"]


def cot_data(tasks: Sequence[Task], rows: Sequence[dict[str, Any]], path: Path) -> Any:
    """The worked solutions of the problems that have trajectories (``agent export-cot --same-as``)."""
    from symkd.jsonio import atomic_write
    from symkd.students.data import from_jsonl

    solved = {r["task_id"] for r in rows}
    with atomic_write(path) as fh:
        for t in tasks:
            if t.id in solved:
                fh.write(json.dumps(cot_record(t)) + "\n")
    return from_jsonl(path)


def epoch_tokens(data: Any, base_model: str, max_length: int) -> int:
    """Tokens one epoch of ``data`` feeds the trainer."""
    from symkd.students.data import tokenize
    from symkd.students.modeling import load_tokenizer

    tokenizer = load_tokenizer(base_model)
    return sum(len(t.input_ids) for t in (tokenize(ex, tokenizer, max_length) for ex in data.examples) if t is not None)


def train_student(name: str, data: Any, out: Path, common: dict[str, Any], *, epochs: float | None = None,
                  budget: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Train to ``epochs`` or to a token ``budget`` (``symkd train ... --epochs E``)."""
    from symkd.students.train import TrainConfig, train

    if budget is not None:
        epochs = budget / max(1, epoch_tokens(data, common["base_model"], common["max_length"]))
    started = time.monotonic()
    config = TrainConfig(out=out, **{**common, "epochs": round(float(epochs), 4)})
    summary = train(data, config, progress=True)  # a bar on stderr: a long run logs how far it got
    gc.collect()  # the model and optimizer; then their heap goes back before evaluating (symkd.memory)
    release_freed_heap()
    tp = summary.get("throughput") or {}
    here = time.monotonic() - started
    total = max(here, float(tp.get("wall_seconds") or 0))  # a resumed run: every process's training
    return {"name": name, "out": str(out), "examples": len(data), "epochs": config.epochs,
            "train_tokens": tp.get("tokens"), "tokens_per_s": tp.get("tokens_per_s"), "mfu": tp.get("mfu"),
            "final_loss": (summary.get("final") or {}), "too_long": (summary.get("data") or {}).get("too_long"),
            "train_seconds": round(total, 1), "earlier_seconds": round(total - here, 1)}  # fmt: skip


def agent_training_data(rows: Sequence[dict[str, Any]], base_model: str, db: Path, negatives: Sequence[dict] = (),
                        label: str = "") -> Any:  # fmt: skip
    from symkd.students.modeling import load_tokenizer

    source = {"kind": "agent-trajectories", "db": str(db), "selection": label}
    if negatives:
        return training_data(rows, load_tokenizer(base_model), source, negatives=negatives)
    return training_data(rows, load_tokenizer(base_model), source)


def evaluate(spec: str, mode: str, test: Path, db: Path, n_test: int, eval_cfg: dict[str, Any], *,
             votes: int = 0, sag: int = 0, few_shot: bool = False) -> tuple[dict[str, Any], dict[str, bool]]:  # fmt: skip
    """Metrics and task -> correct (``symkd agent eval-gsm8k --mode MODE --limit N ...``)."""
    config = AgentConfig(max_steps=eval_cfg["max_steps"], max_tokens=eval_cfg["cot_tokens" if mode == "cot" else "max_tokens"],
                         few_shot=few_shot, sag=sag, sandbox=eval_cfg["sandbox"], wave=eval_cfg["wave"])  # fmt: skip
    dtype = eval_cfg.get("dtype", "auto")  # "auto" adds nothing: the cache keys of earlier runs stay valid
    options = {"batch_size": eval_cfg["batch_size"], **({"dtype": dtype} if dtype != "auto" else {})}
    metrics = pipeline.evaluate(spec, test, db, mode=mode, config=config, limit=n_test, votes=votes,
                                teacher_options=options, progress=True)  # fmt: skip
    with Store(db) as store:
        outcome = paired_outcomes(read_predictions(store, metrics["evaluation_id"]))
    keep = ("accuracy", "ci95", "correct", "items", "answered_rate", "failed_requests", "avg_steps", "parse_error_rate",
            "exec_error_rate", "step_limit_rate", "sample_accuracy", "pass_at_k", "seconds", "evaluation_id")
    return {**{k: metrics[k] for k in keep if k in metrics}, **({"eval_dtype": dtype} if dtype != "auto" else {})}, outcome


def train_tasks(data_dir: Path, n: int | None) -> list[Task]:
    return read_tasks(data_dir / "train.jsonl", limit=n)
