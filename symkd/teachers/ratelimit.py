"""Async rate limiting and cooldown shared by all requests of one API teacher."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """A bucket refilled continuously at ``per_minute / 60`` units a second.

    ``acquire(cost)`` waits until ``cost`` units are available. Costs larger than the
    bucket (a huge request under a small TPM limit) are let through once the bucket is full,
    so nothing waits forever.
    """

    def __init__(self, per_minute: float):
        if per_minute <= 0:
            raise ValueError("rate limit must be positive")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, cost: float = 1.0) -> None:
        async with self._lock:
            cost = min(cost, self.capacity)
            while True:
                self._refill()
                if self.level >= cost:
                    self.level -= cost
                    return
                await asyncio.sleep((cost - self.level) / self.rate)


class Cooldown:
    """After a 429 with Retry-After, every worker pauses until the server is ready again."""

    def __init__(self) -> None:
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, time.monotonic() + max(0.0, seconds))

    async def wait(self) -> None:
        while True:
            delay = self.until - time.monotonic()
            if delay <= 0:
                return
            await asyncio.sleep(delay)
