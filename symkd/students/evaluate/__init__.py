"""Metrics by name: how a student's generations are scored against references.

The core holds no metric of its own; a pipeline registers its :class:`MetricSet` in the
``symkd.metrics`` entry-point group (the commonsense pipeline registers its BLEU-1..4, ROUGE-L and
CIDEr), and evaluations look it up with :func:`get_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from symkd.errors import UserError
from symkd.plugins import Registry

#: name -> MetricSet, from the ``symkd.metrics`` entry points
METRIC_SETS = Registry("symkd.metrics", "metric set")


@dataclass(frozen=True)
class MetricSet:
    """Named metrics and the function that scores rows with them."""

    name: str
    #: the metric names, in report order
    metrics: tuple[str, ...]
    #: ``rows -> {"overall": {metric: value}, ...}``; rows carry the prediction and its references
    score: Callable[..., dict[str, Any]]
    description: str = ""


def get_metrics(name: str) -> MetricSet:
    """The metric set registered as ``name``."""
    found = METRIC_SETS.load(name)
    if not isinstance(found, MetricSet):
        raise UserError(f"metric set {name!r}: not a symkd.students.evaluate.MetricSet")
    return found


def score(name: str, rows: Iterable[Any], **options: Any) -> dict[str, Any]:
    """Score ``rows`` with the metric set ``name``."""
    return get_metrics(name).score(rows, **options)


__all__ = ["METRIC_SETS", "MetricSet", "get_metrics", "score"]
