"""Give freed heap memory back to the operating system when a long CPU run holds too much.

A CPU training step allocates and frees gigabytes of activations whose shapes change with every
micro-batch (length-grouped batches: each has its own width). glibc's malloc keeps what was freed
in its heap for reuse, and with ever-changing sizes that heap only grows: training SmolLM2-135M on
80 agent trajectories held 8.4 GB RSS between steps after 10 steps, 2.2 GB when each step ended
with ``malloc_trim(0)`` (``bench/train_memory.py``, 2-core Intel Xeon, torch 2.13); 1,000
trajectories for three epochs reached 20.7 GB of a 24 GiB machine. Trimming is not free: the next
step page-faults its memory back in (471 instead of 524 tokens/s when trimming after every step),
and ``MALLOC_MMAP_THRESHOLD_`` (every large block ``mmap``-ed) trained 35 % slower in a probe. So
the trainer trims only when the machine (or the process's cgroup) runs short:
:func:`release_if_short`; with it, 2,000 trajectories for two epochs peaked at 18.1 GB. Part of the
growth is not freed memory at all: what stays after a trim grows with the number of distinct
micro-batch widths (a tiny-model probe: flat with one width or widths rounded to 64), which
trimming cannot return; so the trainer rounds CPU widths up to 64 (``loop.CPU_PAD_MULTIPLE``).

Hand-written (a ctypes call and two small files read): torch exposes no allocator control on the
CPU, and swapping the allocator (jemalloc, tcmalloc) needs ``LD_PRELOAD`` before Python starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path

#: trim when less than this share of the machine's (or cgroup's) memory is available
SHORT_SHARE = 0.25


@cache
def _malloc_trim() -> object | None:
    """glibc's ``malloc_trim`` or None (musl, macOS, Windows: nothing to call)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_heap() -> bool:
    """Return the heap's free pages to the OS (glibc); False where there is no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def available_share() -> float | None:
    """Available / total memory of this machine, or of its cgroup v2 limit when that is tighter;
    None where neither can be read."""
    shares = []
    try:
        info = {ln.split(":")[0]: int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()}
        shares.append(info["MemAvailable"] / info["MemTotal"])
    except (OSError, KeyError, ValueError, IndexError, ZeroDivisionError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            shares.append(max(0, int(limit) - used) / int(limit))
    except (OSError, ValueError, ZeroDivisionError):
        pass
    return min(shares) if shares else None


def resident_mb() -> int | None:
    """This process's resident set in MB (Linux ``/proc/self/statm``); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 2**20


def release_if_short(share: float = SHORT_SHARE) -> bool:
    """:func:`release_freed_heap` when less than ``share`` of the memory is available; whether it trimmed."""
    available = available_share()
    return available is not None and available < share and release_freed_heap()
