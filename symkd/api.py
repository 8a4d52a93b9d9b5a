"""The public Python API (documented in the README).

>>> import symkd
>>> reqs = symkd.read_requests("prompts/examples/quickstart.jsonl", max_tokens=32)
>>> result = symkd.generate("smollm2", reqs, "demo.db")    # works inside Jupyter too
>>> for item_id, request, response in result: ...
>>> rows = symkd.run_results("demo.db", result.run_id)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.generation import (
    GenerationResult,
    RunSummary,
    agenerate,
    generate,
    run_results,
)
from symkd.knowledge.datasets import to_dataset
from symkd.pipelines.commonsense import DistillResult, EvaluationResult
from symkd.pipelines.commonsense.evaluate import evaluate_commonsense
from symkd.pipelines.commonsense.pipeline import distill_commonsense
from symkd.pipelines.strategies import learn_strategies
from symkd.pipelines.strategies import retrieve as retrieve_strategies
from symkd.prompts import get_template, list_templates
from symkd.requests_file import read_requests
from symkd.results import TrainResult
from symkd.session import TeacherSession
from symkd.store import runs as _runs
from symkd.store.db import Store
from symkd.students.data import TrainingData
from symkd.students.train import TrainConfig
from symkd.teachers.options import TeacherOptions
from symkd.teachers.registry import list_backends, load_teacher
from symkd.teachers.types import GenerationParams, Message, Request


def train_student(
    data: str | Path | TrainingData,
    out: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    rounds: Sequence[int] = (),
    relations: Sequence[str] = (),
    limit: int | None = None,
    progress: bool = True,
    **train_options: Any,
) -> TrainResult:
    """Fine-tune a student; ``data`` is a run DB, ATOMIC .tsv, .jsonl or :class:`TrainingData`.

    Give either ``config`` or ``out`` plus any :class:`~symkd.students.train.TrainConfig`
    fields as keywords (``base_model``, ``epochs``, ``lora``, ``kd_loss``, ...). ``critics``,
    ``min_score``, ``rounds``, ``relations`` and ``limit`` select a run DB's triples.
    """
    from symkd.commandline import build
    from symkd.students.data import load_data
    from symkd.students.train import train

    if config is None:
        if out is None:
            raise UserError("train_student: give out= (the model folder) or config=")
        config = build(TrainConfig, {**train_options, "out": out}, prefix="")
    elif train_options or out is not None:
        raise UserError("train_student: give config= or out= with options, not both")
    filters = {"critics": list(critics), "min_score": min_score, "rounds": list(rounds), "relations": list(relations),
               "limit": limit}  # fmt: skip
    if isinstance(data, TrainingData):
        corpus = data
    elif Path(data).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        corpus = load_data(data, **filters)
    else:
        if any((critics, min_score is not None, rounds, relations, limit)):
            raise UserError(f"{data}: critics/min_score/rounds/relations/limit apply to a run DB only")
        corpus = load_data(data)
    return TrainResult.from_dict(train(corpus, config, progress=progress))


def open_store(path: str | Path, *, create: bool = True, adopt: bool = False) -> Store:
    """Open (and migrate) a run database; ``adopt`` lets symkd add its tables to a SQLite
    file that is not a symkd database (refused otherwise, the file left unchanged)."""
    return Store(path, create=create, adopt=adopt)


def list_runs(db: str | Path | Store) -> list[dict]:
    """Runs in a database with their item counts (ok / failed / pending); opened read-only."""
    store = db if isinstance(db, Store) else Store(db, create=False, readonly=True)
    try:
        return _runs.list_runs(store)
    finally:
        if not isinstance(db, Store):
            store.close()


__all__ = [
    "learn_strategies",
    "retrieve_strategies",
    "DistillResult",
    "EvaluationResult",
    "GenerationResult",
    "TeacherOptions",
    "TeacherSession",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "to_dataset",
    "GenerationParams",
    "Message",
    "Request",
    "RunSummary",
    "agenerate",
    "distill_commonsense",
    "evaluate_commonsense",
    "generate",
    "get_template",
    "list_backends",
    "list_runs",
    "list_templates",
    "load_teacher",
    "open_store",
    "read_requests",
    "run_results",
    "train_student",
]
