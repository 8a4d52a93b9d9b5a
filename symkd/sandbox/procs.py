"""Finding and killing a container's processes from the host, through /proc.

A container's processes are its zygote's descendants (the zygote is the child subreaper, so a
process whose parent dies is reparented to it, however it left its process group or session)
and, when symkd runs as root, every process of the container's own uid wherever it went. After
a worker is discarded, every process of the container that does not belong to a live worker
(one of the Sandboxes still open on it) is a stray and is killed: setsid children, double-forked
daemons, a fork bomb's sleepers. Kills go through pidfds, so a pid reused meanwhile by a host
process is never hit.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    uid: int
    zombie: bool


def scan() -> dict[int, Proc]:
    """Every process on the host: pid, parent, real uid, zombie or not."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        proc = read(int(entry.name))
        if proc is not None:
            found[proc.pid] = proc
    return found


def read(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        state, ppid, uid = fields["State"].split()[0], int(fields["PPid"]), int(fields["Uid"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None
    return Proc(pid, ppid, uid, state in ("Z", "X"))


def descendants(procs: dict[int, Proc], roots: set[int]) -> set[int]:
    """``roots`` and every process below them."""
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    seen, todo = set(), [r for r in roots if r in procs]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return seen


def strays(zygote: int | None, uid: int | None, keep: set[int]) -> tuple[list[Proc], set[int]]:
    """Processes of the container (below ``zygote``, or of ``uid``) outside ``keep``'s trees,
    and the pids of all its processes."""
    procs = scan()
    mine = descendants(procs, {zygote}) if zygote else set()
    if uid is not None:
        mine |= {p.pid for p in procs.values() if p.uid == uid}
    kept = descendants(procs, {pid for pid in keep if pid in mine}) | {zygote}
    return [procs[pid] for pid in sorted(mine - kept)], mine


def kill(proc: Proc, mine: set[int], own_uid: bool) -> None:
    """SIGKILL ``proc`` through a pidfd if the pid still names a process of the container: of
    its own uid (``own_uid``: no other process has it), else with a parent in the container."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        return
    try:
        now = read(proc.pid)
        if now is not None and now.uid == proc.uid and (own_uid or now.ppid in mine):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep(zygote: int | None, uid: int | None, keep: set[int], timeout: float = 3.0) -> int:
    """Kill strays until there are none (zombies reaped too); returns how many were killed.
    ``uid``: the container's own uid (root only; None when it is symkd's own)."""
    killed, stop = 0, time.monotonic() + timeout
    while time.monotonic() < stop:
        found, mine = strays(zygote, uid, keep)
        if not found:
            break
        for proc in found:
            if not proc.zombie:
                kill(proc, mine, uid is not None)
                killed += 1
        time.sleep(0.002)
    return killed
