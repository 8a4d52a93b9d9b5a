"""The executor interface: what a stage hands an engine, and how the choice is made.

Two operations cover the stages: answering a stage's teacher requests (:meth:`teacher`
returns a :class:`~symkd.teachers.base.Teacher` that :mod:`symkd.generation` drives like
any other, so the run bookkeeping and the cache stay in one place) and mapping a stateful
function over batches (:meth:`map_batches`: a critic's ``score``, an agent's episode —
whatever loads something heavy once per worker). The local path is ``None``, not a
subclass: it must stay exactly today's code, with no Ray import. The interface itself lives in
:mod:`symkd.scale.base`; this module chooses and scopes an executor.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, Iterator

from symkd.errors import UserError
from symkd.scale.base import RAY_HINT, Executor, Factory
from symkd.scale.context import use_executor
from symkd.scale.options import ExecutorOptions, as_executor_options

__all__ = ["RAY_HINT", "Executor", "Factory", "build_executor", "executor_scope"]  # the base types are named here too


def build_executor(options: ExecutorOptions | dict[str, Any] | None) -> Executor | None:
    """The executor the options ask for; None for the local path (no Ray import)."""
    parsed = as_executor_options(options)
    if not parsed.is_ray:
        return None
    if importlib.util.find_spec("ray") is None:
        raise UserError(f"--executor ray needs ray: {RAY_HINT}")
    from symkd.scale.ray_executor import RayExecutor

    return RayExecutor.from_options(parsed)


@contextlib.contextmanager
def executor_scope(options: ExecutorOptions | dict[str, Any] | None) -> Iterator[Executor | None]:
    """Build the executor, make it current for the block, close it afterwards."""
    executor = build_executor(options)
    try:
        with use_executor(executor):
            yield executor
    finally:
        if executor is not None:
            executor.close()
