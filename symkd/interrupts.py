"""Ctrl-C and SIGTERM during a run: cancel the run's task so it closes its books.

A signal that lands while the event loop waits would otherwise leave the run's coroutine
pending and never finished: answers still buffered are lost and the run stays ``running``.
:func:`cancel_on_signals` turns SIGINT and SIGTERM into a cancellation of the current task
(in the main thread only, where signals arrive), so its ``finally`` flushes, releases its
claims and records ``interrupted``; the caller then raises :class:`Interrupted`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: what the CLI prints when a signal stops it
LINE = "symkd: interrupted, rerun the same command to resume"
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
    import asyncio

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
    if caught:  # the task finished although it was cancelled (something swallowed it): still a stop
        raise Interrupted(caught[0])


def quiet_startup() -> Callable[[], None]:
    """Until the returned function is called, Ctrl-C ends the process with the one interrupted
    line and exit code 130 instead of a KeyboardInterrupt traceback from whatever module was
    being imported. For the CLI's start-up (about 1.5 s of imports on 2 cores); only where
    Ctrl-C has Python's default handler (an ignored SIGINT stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(OSError):
            sys.stderr.write(LINE + "\n")
            sys.stderr.flush()
        os._exit(128 + signum)  # nothing has run yet: no state to save, no half-imported module to unwind

    signal.signal(signal.SIGINT, handler)

    def done() -> None:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, previous)

    return done
