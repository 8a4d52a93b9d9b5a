"""The public Python API (documented in the README).

>>> import symkd
>>> reqs = symkd.read_requests("prompts/examples/quickstart.jsonl", max_tokens=32)
>>> summary = symkd.generate("smollm2", reqs, "demo.db")
>>> rows = symkd.run_results("demo.db", summary.run_id)
"""

from __future__ import annotations

from pathlib import Path

from symkd.generation import RunSummary, agenerate, generate, run_results
from symkd.prompts import get_template, list_templates
from symkd.requests_file import read_requests
from symkd.store import runs as _runs
from symkd.store.db import Store
from symkd.teachers.registry import list_backends, load_teacher
from symkd.teachers.types import GenerationParams, Message, Request


def distill_commonsense(*args, **kwargs):  # noqa: ANN002, ANN003
    """Symbolic commonsense distillation; see :func:`symkd.commonsense.pipeline.distill_commonsense`."""
    from symkd.commonsense.pipeline import distill_commonsense as run

    return run(*args, **kwargs)


def train_student(data, config=None, **options):  # noqa: ANN001, ANN003, ANN201
    """Fine-tune a student; ``data`` is a path (run DB, .tsv, .jsonl) or TrainingData.

    ``options`` are :class:`symkd.students.train.TrainConfig` fields (``out`` is required)
    plus, for a run DB, ``critics``/``min_score``/``rounds``/``relations``/``limit``.
    """
    from symkd.students.data import TrainingData, load_data
    from symkd.students.train import TrainConfig, train

    db_keys = {"critics", "min_score", "rounds", "relations", "limit"}
    filters = {k: options.pop(k) for k in list(options) if k in db_keys}
    progress = options.pop("progress", True)
    corpus = data if isinstance(data, TrainingData) else load_data(data, **filters)
    return train(corpus, config or TrainConfig(**options), progress=progress)


def evaluate_commonsense(data, **options):  # noqa: ANN001, ANN003, ANN201
    """ATOMIC2020 scores of a student or teacher; see :func:`symkd.students.evaluate.commonsense.evaluate_commonsense`."""
    from symkd.students.evaluate.commonsense import evaluate_commonsense as run

    return run(data, **options)


def open_store(path: str | Path, *, create: bool = True) -> Store:
    """Open (and migrate) a run database."""
    return Store(path, create=create)


def list_runs(db: str | Path | Store) -> list[dict]:
    """Runs in a database with their item counts (ok / failed / pending)."""
    store = db if isinstance(db, Store) else Store(db, create=False)
    try:
        return _runs.list_runs(store)
    finally:
        if not isinstance(db, Store):
            store.close()


__all__ = [
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
