"""The zygote: the container's first process; drops root, locks itself down, forks workers."""

from __future__ import annotations

import ctypes
import os
import resource
import select
import shutil
import signal
import socket

from .wire import recv_msg, send_msg
from .worker import Worker

# Imported before dropping root in "rlimit" mode, where the interpreter may live under an
# unreadable /root; in "bwrap" mode the interpreter is bind-mounted readable and this is a warm-up.
PRELOAD = ("base64", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
           "encodings.idna", "enum", "fractions", "functools", "glob", "hashlib", "heapq", "itertools",
           "operator", "pathlib", "pprint", "random", "re", "statistics", "string", "subprocess",
           "tempfile", "textwrap", "time", "typing", "uuid", "zlib")



def drop_root(uid: int) -> None:
    """Become ``uid`` for real: the kernel does not apply RLIMIT_NPROC to uid 0."""
    if os.getuid() == 0 or os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if os.getuid() == 0:
        raise SystemExit("sandbox: still root after setuid")


def apply_limits(lim: dict) -> None:
    """Kernel-enforced limits. CPU: soft per step (raised by each step), hard per worker lifetime."""
    mib = 1 << 20
    hard_cpu = int(lim["episode_cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (min(int(lim["cpu_seconds"]), hard_cpu), hard_cpu))
    resource.setrlimit(resource.RLIMIT_AS, (lim["memory_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["file_size_mb"] * mib,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


def install_filter(prog: bytes) -> None:
    """Load the host-built seccomp program (PR_SET_SECCOMP, SECCOMP_MODE_FILTER); fail closed."""

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not install the seccomp filter")


def zygote(cfg: dict) -> None:
    ctl = socket.socket(fileno=cfg["fd"])
    for name in PRELOAD:
        __import__(name)
    drop_root(cfg["uid"])
    _prctl(38, 1)  # PR_SET_NO_NEW_PRIVS: setuid binaries cannot regain root
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphaned workers are reaped (and reported) here
    _prctl(4, 0)  # PR_SET_DUMPABLE 0: same-uid processes cannot ptrace us or open our /proc files
    if cfg.get("seccomp"):
        install_filter(bytes.fromhex(cfg["seccomp"]))
    apply_limits(cfg["limits"])
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    send_msg(ctl, {"op": "ready", "uid": os.getuid()})
    poller = select.poll()  # not select(): the inherited fd numbers pass 1023 when the host runs 200+ sandboxes
    poller.register(ctl, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake_r in ready:
            os.read(wake_r, 4096)
            _report_exits(ctl)
        if ready - {wake_r}:
            try:
                msg, fds = recv_msg(ctl)
            except (EOFError, OSError):
                os._exit(0)
            if msg.get("op") == "spawn":
                _spawn(ctl, msg, fds, cfg, (wake_r, wake_w))
            elif msg.get("op") == "remove":
                _remove(str(msg.get("workdir", "")), cfg.get("box", ""), (wake_r, wake_w))


def _report_exits(ctl: socket.socket) -> None:
    items = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        items.append([pid, os.waitstatus_to_exitcode(status)])
    if items:
        send_msg(ctl, {"op": "exits", "items": items[-1000:]})


def _remove(workdir: str, box: str, wake: tuple) -> None:
    """Delete a discarded worker's workdir: moved to the box's .trash at once, then emptied by a
    child (the zygote never waits on model files; a child killed midway leaves the rest to the
    next one)."""
    if not box or os.path.dirname(workdir.rstrip("/")) != box.rstrip("/"):
        return
    trash = os.path.join(box, ".trash")
    try:
        os.makedirs(trash, exist_ok=True)
        os.rename(workdir, os.path.join(trash, os.path.basename(workdir)))
        if os.fork():
            return
    except OSError:
        return
    signal.set_wakeup_fd(-1)
    for fd in wake:
        os.close(fd)
    for root, dirs, _ in os.walk(trash):  # model code may have made folders unwritable
        for name in dirs:
            try:
                os.chmod(os.path.join(root, name), 0o700)
            except OSError:
                pass
    for name in os.listdir(trash):
        shutil.rmtree(os.path.join(trash, name), ignore_errors=True)
    os._exit(0)


def _spawn(ctl: socket.socket, msg: dict, fds: list[int], cfg: dict, wake: tuple) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        send_msg(ctl, {"op": "spawn_failed", "error": str(exc)})
        for fd in fds:
            os.close(fd)
        return
    if pid:
        for fd in fds:
            os.close(fd)
        return
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in wake:
        os.close(fd)
    ctl.close()
    Worker(fds, cfg["tools"], cfg["limits"], {}).start(msg["workdir"], copy_from=None)
