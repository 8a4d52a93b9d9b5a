"""Critic batches on an executor: score in workers, write the scores in the driver.

Only a critic whose batches are independent may leave the driver; the critic says so itself
(:attr:`symkd.critics.base.Critic.parallel_safe`: a critic that keeps state across batches,
reads the store or asks a teacher does not). This module only hands batches out, so it
imports nothing from :mod:`symkd.critics`.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Sequence


def parallel_safe(critic: Any) -> bool:
    """Whether ``critic.score`` of one batch depends on nothing but that batch (the critic says)."""
    return bool(getattr(critic, "parallel_safe", False))


def _scorer(critic: Any) -> Any:
    """Runs once per worker: the critic (shipped with its settings) loads its model lazily there."""
    return critic.score


def score_batches(critic: Any, batches: Sequence[Sequence[dict]], executor: Any = None) -> Iterator[list[Any]]:
    """The critic's verdicts per batch, in batch order: on the executor when the critic may
    leave the driver, else here (the local path is exactly ``critic.score(batch)``)."""
    if executor is None:
        from symkd.scale.context import current_executor

        executor = current_executor()
    if executor is None or not batches or not parallel_safe(critic):
        return (critic.score(batch) for batch in batches)
    key = f"critic:{critic.name}:{critic.version}:{sorted(critic.describe().items(), key=str)}"
    return executor.map_batches(functools.partial(_scorer, critic), batches, key=key, heavy=True)
