"""The send loop: claim keys, send them, store every answer as it arrives, give back the rest.

Answers are written through one :class:`~symkd.store.cache.ResponseWriter` (flushed before the
feed waits, every ``writer.interval`` seconds by a task of its own, and on the way out); a
heartbeat task renews the claims and the run's liveness.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from symkd.generation.progress_bar import Progress
from symkd.interrupts import Interrupted, cancel_on_signals
from symkd.store import cache, claims, runs
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.messages import Request, Response


async def send(teacher: Teacher, store: Store, owner: claims.Owner, run_id: str, todo: dict[str, Request],
               items_per_key: dict[str, int], counts: dict[str, int], bar: Progress) -> None:  # fmt: skip
    """Send the keys this process claims; count what it answers and what others answered.

    A signal cancels this task (see :mod:`symkd.interrupts`); the ``finally`` still stores
    every answer that arrived and gives back the claims on keys never answered.
    """
    key_of = {id(req): key for key, req in todo.items()}
    writer = cache.ResponseWriter(store, owner=owner.name)

    def on_response(request: Request, response: Response) -> None:
        key = key_of[id(request)]
        writer.add(key, response)
        n = items_per_key[key]
        counts["done" if response.ok else "failed"] += n
        bar.advance(n, failed=not response.ok)

    def on_others(found: Sequence[str]) -> None:
        n = sum(items_per_key[k] for k in found)
        counts["others"] += n
        bar.advance(n, failed=False)

    chunk = getattr(teacher, "concurrency", None) or getattr(teacher, "batch_size", 8)
    feed = claims.ClaimFeed(store, owner, run_id, todo, chunk=min(max(chunk, 8), 512), on_answered=on_others,
                            before_wait=writer.flush)  # fmt: skip
    beat = asyncio.create_task(heartbeat(store, owner, run_id))
    flusher = asyncio.create_task(flush_every(writer))
    try:
        with cancel_on_signals() as caught, bar:
            try:
                if teacher.accepts_source:
                    await teacher.agenerate(feed, on_response)
                else:  # a teacher that iterates a plain list: claimed requests, a list at a time
                    while batch := await feed.drain():
                        await teacher.agenerate(batch, on_response)
            except asyncio.CancelledError:
                if caught:
                    raise Interrupted(caught[0]) from None
                raise
    finally:
        beat.cancel()
        flusher.cancel()
        await asyncio.gather(beat, flusher, return_exceptions=True)  # ended before the loop closes
        writer.flush()
        claims.release_all(store, owner)


async def heartbeat(store: Store, owner: claims.Owner, run_id: str) -> None:
    """Renew this owner's leases and the run's heartbeat, a few times per lease."""
    while True:
        await asyncio.sleep(claims.LEASE_S / 4)
        with store.transaction():
            claims.renew(store, owner)
            runs.beat(store, run_id, owner)


async def flush_every(writer: cache.ResponseWriter) -> None:
    """Store buffered answers every ``writer.interval`` s even when no new answer comes: the
    writer flushes on an ``add``, so an answer that arrived just after a flush would otherwise
    wait in memory for the next one (minutes behind a long local generation, and lost to a kill)."""
    while True:
        await asyncio.sleep(writer.interval)
        if writer.buffer:
            writer.flush()
