"""Nothing of a sandbox outlives its owner: live containers are killed at exit, and folders that
owners which died without cleaning up left behind are swept when the next sandbox starts.

In "bwrap" mode a container has nothing on the host disk (its workdir and /tmp are sized tmpfs
inside its mount namespace, its log an unlinked temporary file) and bubblewrap dies with its
parent. In "rlimit" mode the container's folder is named after its owner (pid and start time);
``Sandbox.close``, an ``atexit`` hook and, for an owner that was SIGKILLed, the next start's
sweep remove it.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

PREFIX = "symkd-sandbox-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)\.(\d+)-")
_live: set[Any] = set()
_swept = False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (with the pid, its identity)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def sweep_once() -> None:
    """The first container of this process sweeps what dead owners left (once: it lists TMPDIR)."""
    global _swept
    if not _swept:
        _swept = True
        sweep_stale()


def make_dir() -> Path:
    """A fresh folder for one container, named after this process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}.{start_time(os.getpid())}-"))


def sweep_stale(folder: str | None = None) -> list[str]:
    """Remove container folders whose owner process is gone; returns their names."""
    removed = []
    folder = folder or tempfile.gettempdir()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _OWNED.match(name)
        if match and start_time(int(match.group(1))) != int(match.group(2)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(name)
    return removed


def register(container: Any) -> None:
    _live.add(container)


def unregister(container: Any) -> None:
    _live.discard(container)


@atexit.register
def kill_all() -> None:
    """At interpreter exit: kill every container still up (an interrupted run's, say)."""
    for container in list(_live):
        try:
            container.kill()
        except Exception:  # noqa: BLE001 - exiting anyway; the next start sweeps what is left
            pass
