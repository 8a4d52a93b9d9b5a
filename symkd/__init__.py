"""symkd: agent-and-symbolic knowledge distillation.

Teacher LLMs -> raw generations (cached in SQLite) -> critics -> curated tables -> graphs and
strategy libraries -> students. The public API lives in :mod:`symkd.api` and is loaded on
first use, so ``import symkd`` (and every subprocess that imports a submodule) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from symkd._version import __version__

_API = [
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

#: each pipeline's run configuration (one pydantic model: the Python API's ``config=`` and the
#: CLI's flags), loaded from its pipeline on first use
_CONFIGS = {
    "DistillConfig": "symkd.pipelines.commonsense.config",
    "EvalConfig": "symkd.pipelines.commonsense.config",
    "AgentConfig": "symkd.pipelines.agents.options",
    "LearnConfig": "symkd.pipelines.strategies.options",
}

__all__ = ["__version__", *_API, *_CONFIGS]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("symkd.api"), name)
    if name in _CONFIGS:
        return getattr(importlib.import_module(_CONFIGS[name]), name)
    raise AttributeError(f"module 'symkd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
