"""A fixed set of Ray actors with a few calls queued on each, and what to do when one dies.

Ray schedules the actors; this only keeps each busy (``inflight`` calls queued, so an actor
starts its next chunk without waiting for the driver) and moves the work of a lost actor
to the survivors. Ray itself is passed in, so this module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Awaitable, Callable, Iterator, Sequence


class AllWorkersLost(RuntimeError):
    """Every actor of the pool died; the caller records what is left as failed."""


class ActorPool:
    def __init__(self, ray: Any, cls: type, args: Sequence[tuple], resources: dict[str, float], *, inflight: int = 2):
        self.ray = ray
        remote = ray.remote(max_restarts=0, max_task_retries=0, **resources)(cls)
        self.actors = [remote.remote(*a) for a in args]
        self.alive = set(range(len(self.actors)))
        self.inflight = inflight
        self.lost = 0  # actors that died under work

    def call_all(self, method: str) -> list[Any]:
        """``method()`` on every actor (e.g. preflight); the first error is raised as itself."""
        return [self._get(ref) for ref in [getattr(a, method).remote() for a in self.actors]]

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            raise (getattr(exc, "cause", None) or exc) from None

    def _slots(self) -> deque[int]:
        return deque(w for _ in range(self.inflight) for w in sorted(self.alive))

    def _lose(self, worker: int, slots: deque[int]) -> deque[int]:
        if worker in self.alive:  # its other queued calls fail too: count the actor once
            self.alive.discard(worker)
            self.lost += 1
        return deque(s for s in slots if s != worker)

    def map_ordered(self, method: str, items: Sequence[Any]) -> Iterator[Any]:
        """``method(item)`` for every item, results in item order; a lost actor's items are redone."""
        todo, slots = deque(range(len(items))), self._slots()
        inflight: dict[Any, tuple[int, int]] = {}
        results: dict[int, Any] = {}
        for position in range(len(items)):
            while position not in results:
                while todo and slots:
                    i, w = todo.popleft(), slots.popleft()
                    inflight[getattr(self.actors[w], method).remote(items[i])] = (i, w)
                if not inflight:
                    raise AllWorkersLost("every Ray worker was lost")
                [ready], _ = self.ray.wait(list(inflight), num_returns=1)
                i, w = inflight.pop(ready)
                try:
                    results[i] = self._get(ready)
                    slots.append(w)
                except self.ray.exceptions.RayActorError:
                    slots = self._lose(w, slots)
                    todo.appendleft(i)  # scoring a batch again is harmless
            yield results.pop(position)

    async def amap(self, method: str, next_chunk: Callable[[], Awaitable[Any]], on_result: Callable[[Any, Any], None],
                   on_lost: Callable[[Any, int], Any]) -> list[Any]:  # fmt: skip
        """Run chunks until ``next_chunk()`` returns None (pulled only when an actor has room,
        so a long feed is never held in memory); ``on_result(chunk, result)`` as each finishes.
        For a chunk whose actor died, ``on_lost(chunk, worker)`` returns what is still to do
        (or None), which goes to a survivor. Returns the chunks left when no actor is left."""
        retry: deque[Any] = deque()
        slots = self._slots()
        inflight: dict[asyncio.Future, tuple[Any, int]] = {}
        exhausted = False
        while True:
            while slots and (retry or not exhausted):
                chunk = retry.popleft() if retry else await next_chunk()
                if chunk is None:
                    exhausted = True
                    break
                w = slots.popleft()
                ref = getattr(self.actors[w], method).remote(chunk)
                inflight[asyncio.wrap_future(ref.future())] = (chunk, w)
            if not inflight:
                return list(retry) + (await _drain(next_chunk) if not exhausted else [])
            done, _ = await asyncio.wait(list(inflight), return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                chunk, w = inflight.pop(future)
                try:
                    result = future.result()
                except self.ray.exceptions.RayActorError:
                    slots = self._lose(w, slots)
                    rest = on_lost(chunk, w)
                    if rest:
                        retry.append(rest)
                    continue
                except self.ray.exceptions.RayTaskError as exc:
                    raise (getattr(exc, "cause", None) or exc) from None
                slots.append(w)
                on_result(chunk, result)

    def kill(self) -> None:
        """Close each live actor (releases models and connections), then end it."""
        for w in sorted(self.alive):
            try:
                self.ray.get(self.actors[w].close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dying actor is ended below anyway
                pass
        for actor in self.actors:
            self.ray.kill(actor)
        self.alive.clear()


async def _drain(next_chunk: Callable[[], Awaitable[Any]]) -> list[Any]:
    out = []
    while (chunk := await next_chunk()) is not None:
        out.append(chunk)
    return out
