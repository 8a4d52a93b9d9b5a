"""The executor interface: what a stage hands an engine, and how the choice is made.

Two operations cover the stages: answering a stage's teacher requests (:meth:`teacher`
returns a :class:`~symkd.teachers.base.Teacher` that :mod:`symkd.generation` drives like
any other, so the run bookkeeping and the cache stay in one place) and mapping a stateful
function over batches (:meth:`map_batches`: a critic's ``score``, an agent's episode —
whatever loads something heavy once per worker). The local path is ``None``, not a
subclass: it must stay exactly today's code, with no Ray import.
"""

from __future__ import annotations

import contextlib
import importlib.util
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

from symkd.errors import UserError
from symkd.scale.context import use_executor
from symkd.scale.options import ExecutorOptions, as_executor_options

#: a picklable zero-argument callable that builds the per-worker function (once per worker)
Factory = Callable[[], Callable[[Sequence[Any]], list[Any]]]

RAY_HINT = "pip install 'symkd[ray]'"


class Executor(ABC):
    """Runs a stage's work somewhere other than this process; the driver writes the store."""

    name: str = ""

    @abstractmethod
    def teacher(self, spec: Any, options: dict[str, Any], store: Any) -> Any:
        """A Teacher answering for ``spec`` (with TeacherOptions ``options``) on the workers,
        whose cache identity equals the local one (so local and distributed runs share a cache)."""

    @abstractmethod
    def map_batches(self, factory: Factory, batches: Sequence[Sequence[Any]], *, key: str,
                    heavy: bool = True) -> Iterator[list[Any]]:  # fmt: skip
        """``factory()(batch)`` for every batch, in batch order; ``factory`` runs once per worker
        and workers are kept while ``key`` stays the same (a model loads once per stage)."""

    def close(self) -> None:
        """Release the workers (and any engine this executor started)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
