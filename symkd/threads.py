"""CPU threads for in-process models when several symkd processes share the cores.

torch (and llama.cpp) default to one thread per core in *each* process. Two processes doing that
on the same two cores each run about ten times slower, not two (their thread pools spin-wait on
each other). Every process that runs a model on the CPU :func:`register`\\ s itself in a small
folder of pid files (``$SYMKD_CPU_REGISTRY``, else ``<tmp>/symkd-cpu-<uid>``), and
:func:`thread_share` gives each the CPUs of its affinity mask divided by the number of live
registered processes, recomputed whenever a model asks (a process that started alone shrinks
its pool when a second one starts, and grows back when it leaves). A file whose process is gone
(kill -9, pid reused by another program: the start time recorded in the file differs) does not
count, nor does a stopped one (Ctrl-Z, SIGSTOP: it uses no CPU until it continues, and then
asks again). ``SYMKD_THREADS=N`` or an explicit ``threads`` option wins over the share.

Hand-written (about 60 lines): no library keeps a cross-process count of CPU users; the pid-file
registry needs only the standard library and works for processes that never talk to each other.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

_registered: set[Path] = set()


def registry() -> Path:
    return Path(os.environ.get("SYMKD_CPU_REGISTRY") or Path(tempfile.gettempdir()) / f"symkd-cpu-{os.getuid()}")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot): fields 3 and 22 of /proc/PID/stat, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], fields[19]


def _start_time(pid: int) -> str | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def register() -> None:
    """Count this process as a CPU user until it exits (idempotent)."""
    folder = registry()
    me = folder / str(os.getpid())
    if me in _registered:
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{os.getpid()}.tmp"
    tmp.write_text(_start_time(os.getpid()) or "")
    tmp.replace(me)
    _registered.add(me)
    atexit.register(unregister)


def unregister() -> None:
    for path in list(_registered):
        path.unlink(missing_ok=True)
        _registered.discard(path)


#: /proc states of a process that runs nothing: stopped, traced (stopped by a debugger), zombie
STOPPED = frozenset("TtZ")


def live_processes() -> int:
    """Registered processes still running and not stopped (this one included when registered)."""
    folder = registry()
    try:
        entries = [p for p in folder.iterdir() if p.name.isdigit()]
    except OSError:
        return 0
    live = 0
    for entry in entries:
        try:
            recorded = entry.read_text()
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if stat is None:
            entry.unlink(missing_ok=True)  # its process is gone: tidy up
        elif stat[1] == recorded and stat[0] not in STOPPED:
            live += 1
    return live


def thread_share(requested: int | None = None) -> int:
    """Threads for this process: ``requested``, else ``$SYMKD_THREADS``, else CPUs / live users."""
    if requested:
        return requested
    env = os.environ.get("SYMKD_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, available_cpus() // max(1, live_processes()))


_torch_ceiling: list[int] = []


def apply_torch_threads(requested: int | None = None) -> int:
    """Register, then set torch's intra-op threads to this process's share (when it changed).

    Without an explicit count the share never exceeds what torch had before symkd first set it
    (a notebook or test that called ``torch.set_num_threads(1)`` keeps one thread)."""
    import torch

    register()
    if not _torch_ceiling:
        _torch_ceiling.append(torch.get_num_threads())
    n = thread_share(requested)
    if not requested and not os.environ.get("SYMKD_THREADS", "").strip().isdigit():
        n = min(n, _torch_ceiling[0])
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
