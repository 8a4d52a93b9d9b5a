"""Async rate limiting and cooldown shared by all requests of one API teacher.

Both classes are driven from one event loop and need no lock: a caller *reserves* its slot
synchronously (so slots are handed out first come, first served) and then sleeps until it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    """A token bucket refilled continuously at ``per_minute / 60`` units a second.

    The bucket holds at most ``burst`` units — by default one second's worth of the rate
    (never less than one request), because providers enforce per-minute limits over much
    shorter windows (OpenAI: "60,000 RPM may be enforced as 1,000 requests per second"). So
    ``rpm=600`` lets 10 requests go at once and then one every 100 ms, rather than 600 at
    once and a 429 storm. Over any stretch of time no more than ``burst + rate * t`` units
    pass.

    A cost larger than the bucket (a huge request under a small TPM limit) waits for a full
    bucket and then leaves the bucket in debt, so it neither waits forever nor lets the
    long-run rate exceed the limit.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if per_minute <= 0:
            raise ValueError("rate limit must be positive")
        self.rate = per_minute / 60.0
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        if self.capacity <= 0:
            raise ValueError("burst must be positive")
        self.clock = clock
        self.level = self.capacity
        self.stamp = clock()

    def reserve(self, cost: float = 1.0) -> float:
        """Take ``cost`` units now; return how many seconds to wait before using them."""
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(cost, self.capacity)
        delay = max(0.0, (need - self.level) / self.rate)
        self.level -= cost
        return delay

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` units are available (FIFO among callers) and take them."""
        delay = self.reserve(cost)
        if delay > 0:
            await asyncio.sleep(delay)


class Cooldown:
    """After a 429 with Retry-After, every worker pauses until the server is ready again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` from now (a shorter pause never cuts a longer one)."""
        self.until = max(self.until, self.clock() + max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock())

    async def wait(self) -> None:
        """Return once the cooldown is over (at once when there is none)."""
        while True:
            delay = self.until - self.clock()
            if delay <= 0:
                return
            await asyncio.sleep(delay)
