"""Critic batches on an executor: score in workers, write the scores in the driver.

Only a critic whose batches are independent may leave the driver. The critic interface
already says which ones are not: a critic that keeps state across batches forgets it in
``reset``, one that reads the store takes it in ``bind``, one that asks a teacher sends its
requests in ``prepare`` (dedupe, the LLM judge). So a critic that overrides none of them
scores each batch on its own and runs on the workers (rules, the MiniLM classifier); a
critic class can say otherwise with ``parallel = True/False``.
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Sequence

STATEFUL_HOOKS = ("bind", "reset", "prepare")


def parallel_safe(critic: Any) -> bool:
    """Whether ``critic.score`` of one batch depends on nothing but that batch."""
    from symkd.critics.base import Critic

    declared = getattr(type(critic), "parallel", None)
    if declared is not None:
        return bool(declared)
    return all(getattr(type(critic), hook) is getattr(Critic, hook) for hook in STATEFUL_HOOKS)


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
