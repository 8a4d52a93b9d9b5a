"""Ctrl-C and SIGTERM during a run: cancel the run's task so it closes its books.

A signal that lands while the event loop waits would otherwise leave the run's coroutine
pending and never finished: answers still buffered are lost and the run stays ``running``.
:func:`cancel_on_signals` turns SIGINT and SIGTERM into a cancellation of the current task
(in the main thread only, where signals arrive), so its ``finally`` flushes, releases its
claims and records ``interrupted``; the caller then raises :class:`Interrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: signals this process was stopped by, latest last (the CLI exits with 128 + the latest:
#: typer turns every KeyboardInterrupt into a plain exit code 130, losing which it was)
received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``); what it finished is stored."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[list[int]]:
    """While inside, SIGINT/SIGTERM cancel the current task; yields the signals caught."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signals go to the main thread; its KeyboardInterrupt cancels our future
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    previous = {}
    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if handler is signal.SIG_IGN or task is None:
            continue

        def on_signal(sig: int = sig) -> None:
            caught.append(sig)
            received.append(sig)
            task.cancel()

        try:
            loop.add_signal_handler(sig, on_signal)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread (e.g. the Jupyter helper loop) or no signal support: Ctrl-C stays Python's
        previous[sig] = handler
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
