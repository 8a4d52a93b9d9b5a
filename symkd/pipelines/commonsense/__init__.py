"""Symbolic commonsense distillation (ATOMIC-style triples): the pipeline's public module.

Other pipelines and the API use only what is named here; submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "distill_commonsense": "symkd.pipelines.commonsense.pipeline",
    "DistillResult": "symkd.pipelines.commonsense.pipeline",
    "DEFAULT_CRITICS": "symkd.pipelines.commonsense.config",
    "DistillConfig": "symkd.pipelines.commonsense.config",
    "EvalConfig": "symkd.pipelines.commonsense.config",
    "evaluate_commonsense": "symkd.pipelines.commonsense.evaluate",
    "EvaluationResult": "symkd.pipelines.commonsense.evaluate",
    "read_atomic_tsv": "symkd.pipelines.commonsense.atomic",
    "dev_split": "symkd.pipelines.commonsense.atomic",
}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
