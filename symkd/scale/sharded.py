"""The teacher the Ray executor hands :mod:`symkd.generation`: requests in, answers out.

Generation drives it like any backend, so run rows, request rows, run items and every
response still go through the one cache writer in the driver, under the same keys a local
run uses (its cache identity is the local one). Behind :meth:`ShardedTeacher.agenerate`,
the requests are cut into chunks and answered by actors of a pool; answers already in a
shard file (a lost worker's, or a killed driver's) are taken from there first.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from symkd.errors import TeacherUnavailable
from symkd.scale import shards
from symkd.store.cache import row_to_response
from symkd.teachers.base import OnResponse, Teacher
from symkd.teachers.messages import Request, Response

if TYPE_CHECKING:
    from symkd.scale.base import TeacherPools
    from symkd.teachers.spec import TeacherSpec

LOST = "ray worker lost before answering (rerun to retry)"


class ShardedTeacher(Teacher):
    """``spec`` answered by the executor's actors; the driver never loads the model."""

    heavy = False
    accepts_source = True  # pulls from generation's claim feed as actors free up (no bubble per claimed batch)

    def __init__(self, executor: "TeacherPools", spec: "TeacherSpec", identity: tuple[str, str],
                 describe: dict[str, Any], shard_dir: Path):  # fmt: skip
        self.model = self.model_id = identity[1]  # what the keys name; nothing is loaded here
        self.backend = identity[0]  # type: ignore[misc]
        # workers get the text (they parse it in their own process) and the options
        self.executor, self.parsed, self.spec_text, self.options = executor, spec, spec.text, dict(spec.options)
        self.identity, self.record, self.shard_dir = identity, describe, shard_dir
        self.worker_spec: str | bytes = spec.text  # or a pickled spec holding a chat model object
        self.imports: list[tuple[str, str]] = []  # (module, folder) the workers import the teacher's code from
        self.recovered = 0

    @property
    def pool_key(self) -> str:
        return f"teacher:{self.spec_text}:{sorted(self.options.items())}"

    def cache_identity(self) -> tuple[str, str]:
        return self.identity

    def describe(self) -> dict[str, Any]:
        return dict(self.record)

    async def preflight(self) -> None:
        """Start the actors and load the model / reach the server in each, before any work."""
        try:
            self.executor.teacher_pool(self)
        except TeacherUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - one line for the user, whatever the worker raised
            raise TeacherUnavailable(f"ray workers for {self.spec_text}: {type(exc).__name__}: {exc}") from None

    @property
    def concurrency(self) -> int:
        """What generation claims per transaction from its feed (see symkd.store.claims)."""
        return 512

    async def agenerate(self, requests: Any, on_response: OnResponse) -> None:
        """Pull chunks from ``requests`` (a sequence or a feed with ``async next()``), take what
        the shard files already hold, send the rest to the actors."""
        pull = _puller(requests)
        total = len(requests) if hasattr(requests, "__len__") else None
        # built in preflight; rebuilt here only if every actor died (off the loop: the claims' heartbeat runs on it)
        pool = await asyncio.to_thread(self.executor.teacher_pool, self)
        size = self.executor.chunk_size or self._chunk_size(total, len(pool.alive))
        by_key: dict[str, Request] = {}

        def deliver(chunk: Any, rows: list[dict]) -> None:
            for row in rows:
                on_response(by_key.pop(row["key"]), row_to_response(row))

        def recover(chunk: list[tuple[str, Request]]) -> list[tuple[str, Request]]:
            """Deliver what a shard file holds (a lost worker's or a killed driver's); the rest is to do."""
            found = shards.lookup(self.shard_dir, [k for k, _ in chunk])
            self.recovered += len(found)
            self.executor.recovered += len(found)
            deliver(chunk, list(found.values()))
            return [(k, r) for k, r in chunk if k not in found]

        async def next_chunk() -> list[tuple[str, Request]] | None:
            while True:
                chunk = []
                while len(chunk) < size and (request := await pull()) is not None:
                    key = request.cache_key(*self.identity)
                    by_key[key] = request
                    chunk.append((key, request))
                if not chunk:
                    return None
                chunk = recover(chunk)
                if chunk:
                    return chunk

        left = await pool.amap("answer", next_chunk, deliver, lambda chunk, worker: recover(chunk))
        for chunk in left:
            for key, request in chunk:
                on_response(request, Response(error=LOST))

    def _chunk_size(self, total: int | None, workers: int) -> int:
        """About four chunks per worker (an even spread, small enough to stream), at most
        ``chunk_cap`` requests (a few rounds of the worker's concurrency)."""
        if not total:
            return self.chunk_cap
        return max(1, min(self.chunk_cap, math.ceil(total / (4 * max(1, workers)))))

    @property
    def chunk_cap(self) -> int:
        return 4 * int(self.options.get("concurrency") or 16)


def _puller(requests: Any) -> Any:
    """``async () -> Request | None`` over a plain sequence or a feed that has ``async next()``."""
    if hasattr(requests, "next") and callable(requests.next):
        return requests.next
    it = iter(requests)

    async def pull() -> Request | None:
        return next(it, None)

    return pull
