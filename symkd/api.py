"""The public Python API (documented in the README).

>>> import symkd
>>> reqs = symkd.read_requests("prompts/examples/quickstart.jsonl", max_tokens=32)
>>> result = symkd.generate("smollm2", reqs, "demo.db")    # works inside Jupyter too
>>> for item_id, request, response in result: ...
>>> rows = symkd.run_results("demo.db", result.run_id)
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Sequence

from symkd.errors import UserError
from symkd.generation import (
    GenerationResult,
    RunSummary,
    agenerate,
    generate,
    run_results,
)
from symkd.pipelines.commonsense.datasets import to_dataset
from symkd.pipelines.agents.options import AgentConfig
from symkd.pipelines.commonsense import DistillResult, EvaluationResult
from symkd.pipelines.commonsense.config import DistillConfig, EvalConfig
from symkd.pipelines.commonsense.evaluate import evaluate_commonsense as _evaluate_commonsense
from symkd.pipelines.commonsense.pipeline import distill_commonsense as _distill_commonsense
from symkd.pipelines.strategies import learn_strategies as _learn_strategies
from symkd.pipelines.strategies import retrieve as retrieve_strategies
from symkd.pipelines.strategies.options import LearnConfig
from symkd.prompts import get_template, list_templates
from symkd.requests_file import read_requests
from symkd.results import TrainResult
from symkd.session import TeacherSession
from symkd.store import runs as _runs
from symkd.store.db import Store, opened
from symkd.students.data import TrainingData
from symkd.students.train import TrainConfig
from symkd.teachers.options import TeacherOptions
from symkd.teachers.base import Teacher
from symkd.teachers.registry import list_backends, load_teacher, teacher_spec
from symkd.teachers.messages import GenerationParams, Message, Request


def _teacher_args(fn: Callable[..., Any], *names: str) -> Callable[..., Any]:
    """``fn`` whose teacher arguments may also be LangChain chat models: every spec string or
    chat model becomes a TeacherSpec here, once (a Teacher instance is passed as it is)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        for name in names:
            value = bound.arguments.get(name)
            if value is not None and not isinstance(value, Teacher):
                bound.arguments[name] = teacher_spec(value)
        return fn(*bound.args, **bound.kwargs)

    return call


distill_commonsense = _teacher_args(_distill_commonsense, "teacher")
evaluate_commonsense = _teacher_args(_evaluate_commonsense, "teacher")
learn_strategies = _teacher_args(_learn_strategies, "teacher", "student")


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
    with opened(db, create=False, readonly=True) as store:
        return _runs.list_runs(store)


__all__ = [
    "AgentConfig",
    "DistillConfig",
    "EvalConfig",
    "LearnConfig",
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
