"""The executor's base types, which every other module of :mod:`symkd.scale` builds on.

:class:`Executor` is what a stage hands its work to (see :mod:`symkd.scale.executor` for how
one is chosen); :class:`TeacherPools` is what a :class:`~symkd.scale.sharded.ShardedTeacher`
needs of the executor that made it. This module imports nothing of :mod:`symkd.scale`, so the
executors, the context variable and the sharded teacher can all import it without a circle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Protocol, Sequence

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


class TeacherPools(Protocol):
    """The executor as a sharded teacher uses it: a pool of actors per teacher (started on first
    use), the chunk size (None: sized from the pool) and the count of answers recovered from shard
    files."""

    chunk_size: int | None
    recovered: int

    def teacher_pool(self, teacher: Any) -> Any: ...
