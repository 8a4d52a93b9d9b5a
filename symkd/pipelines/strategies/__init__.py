"""Strategy distillation (guidance elicitation and retrieval): the pipeline's public module.

A teacher watches where a student fails and writes short, general guidance; only guidance that
measurably helps the student is kept; the student retrieves relevant pieces at inference. No
weights change. Other pipelines and users' code use only what is named here; submodules are
imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "learn_strategies": "symkd.pipelines.strategies.pipeline",
    "LearnResult": "symkd.pipelines.strategies.pipeline",
    "LearnConfig": "symkd.pipelines.strategies.options",
    "retrieve": "symkd.pipelines.strategies.retrieval",
    "format_guidance": "symkd.pipelines.strategies.retrieval",
    "context_provider": "symkd.pipelines.strategies.retrieval",
    "Retriever": "symkd.pipelines.strategies.retrieval",
    "Strategy": "symkd.pipelines.strategies.library",
    "edit_strategy": "symkd.pipelines.strategies.library",
    "strategy_versions": "symkd.pipelines.strategies.library",
    "export_library": "symkd.pipelines.strategies.export",
    "import_library": "symkd.pipelines.strategies.importer",
    "Scorer": "symkd.pipelines.strategies.acceptance",
    "Trial": "symkd.pipelines.strategies.acceptance",
    "Attempt": "symkd.pipelines.strategies.acceptance",
    "sign_test": "symkd.pipelines.strategies.acceptance",
    "StrategyLeakCritic": "symkd.pipelines.strategies.critic",
    "Scenario": "symkd.pipelines.strategies.scenarios",
    "read_scenarios": "symkd.pipelines.strategies.scenarios",
}
_ALIASES = {"edit_strategy": "edit", "strategy_versions": "versions"}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), _ALIASES.get(name, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
