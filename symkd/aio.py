"""Running symkd's coroutines from synchronous code, also where an event loop already runs.

``asyncio.run`` fails inside Jupyter (its kernel runs a loop in the main thread), which is
where most users of a Python API for corpus generation work. :class:`LoopRunner` runs on a
loop of its own in the calling thread when none is running there (signals and Ctrl-C behave
as usual), and on a loop in a helper thread otherwise. One runner serves many calls, so an
API teacher's connections, bound to the loop that opened them, are reused across calls.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopRunner:
    """Runs coroutines to completion on one private event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.loop.run_forever, name="symkd-loop", daemon=True)
            self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result; in a thread with a running loop, it runs on the helper thread."""
        if self._thread is None and not loop_running():
            return self.loop.run_until_complete(coro)
        self._start_thread()
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine from synchronous code (inside Jupyter too)."""
    runner = LoopRunner()
    try:
        return runner.run(coro)
    finally:
        runner.close()
