"""The process that runs model code, inside the sandbox. Stdlib only: it runs from a neutral
interpreter path (/opt/symkd-py) where nothing of symkd is importable, and the host imports
only the framing helpers (``send_msg``/``recv_msg``) from here so both sides share one protocol.

Started as ``python -s -B _worker.py CONFIG_JSON``; it becomes the *zygote*: it drops root
(setgroups/setgid/setuid to its container's own uid, so RLIMIT_NPROC binds), applies the rlimits, makes itself the
child subreaper, then waits for ``spawn`` requests. Each spawn forks one *worker* that holds one
episode's globals. A worker forks itself (double fork, so the copy is reparented to the zygote and
reaped there) to give ``Sandbox.fork()`` a copy of its state. Frames are a 4-byte big-endian
length and UTF-8 JSON; file descriptors travel with SCM_RIGHTS.
"""

from __future__ import annotations

import builtins
import ctypes
import json
import linecache
import math
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import traceback

MAX_FRAME = 16 << 20
_ANC = socket.CMSG_SPACE(8 * 4) + socket.CMSG_SPACE(12)
# Imported before dropping root in "rlimit" mode, where the interpreter may live under an
# unreadable /root; in "bwrap" mode the interpreter is bind-mounted readable and this is a warm-up.
PRELOAD = ("base64", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
           "encodings.idna", "enum", "fractions", "functools", "glob", "hashlib", "heapq", "itertools",
           "operator", "pathlib", "pprint", "random", "re", "statistics", "string", "subprocess",
           "tempfile", "textwrap", "time", "typing", "uuid", "zlib")


def send_msg(sock: socket.socket, obj: dict, fds: list[int] | tuple = ()) -> None:
    """Send one frame; ``fds`` ride along with the first byte (SCM_RIGHTS)."""
    data = json.dumps(obj, default=str).encode()
    frame = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame[:4]], list(fds))
        frame = frame[sent:]
    sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int, fds: list[int], creds: list[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        data, anc, _flags, _addr = sock.recvmsg(n - len(buf), _ANC)
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
            elif level == socket.SOL_SOCKET and kind == getattr(socket, "SCM_CREDENTIALS", -1):
                creds[:] = struct.unpack("iII", payload[:12])
        if not data:
            raise EOFError("peer closed the channel")
        buf += data
    return buf


def recv_msg(sock: socket.socket) -> tuple[dict, list[int], int | None]:
    """Receive one frame: (message, passed fds, sender pid in *our* pid namespace if SO_PASSCRED)."""
    fds: list[int] = []
    creds: list[int] = []
    (size,) = struct.unpack(">I", _recv_exact(sock, 4, fds, creds))
    if size > MAX_FRAME:
        raise EOFError(f"frame of {size} bytes is over the {MAX_FRAME} limit")
    msg = json.loads(_recv_exact(sock, size, fds, creds))
    if not isinstance(msg, dict):
        raise EOFError("frame is not a JSON object")
    return msg, fds, (creds[0] if creds else None)


# ---------------------------------------------------------------- start-up (zygote)


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


def zygote(cfg: dict) -> None:
    ctl = socket.socket(fileno=cfg["fd"])
    for name in PRELOAD:
        __import__(name)
    drop_root(cfg["uid"])
    _prctl(38, 1)  # PR_SET_NO_NEW_PRIVS: setuid binaries cannot regain root
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphaned workers are reaped (and reported) here
    apply_limits(cfg["limits"])
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    send_msg(ctl, {"op": "ready", "uid": os.getuid()})
    while True:
        ready, _, _ = select.select([ctl, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _report_exits(ctl)
        if ctl in ready:
            try:
                msg, fds, _ = recv_msg(ctl)
            except (EOFError, OSError):
                os._exit(0)
            if msg.get("op") == "spawn":
                _spawn(ctl, msg, fds, cfg, (wake_r, wake_w))


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


# ---------------------------------------------------------------- worker


class _FinalAnswer(BaseException):
    """Ends a step; a BaseException so ``except Exception`` in model code does not swallow it."""


class ToolError(RuntimeError):
    """A host-side tool raised; the message is the tool's error."""


class Worker:
    """One episode's interpreter state, served over one control socket."""

    def __init__(self, fds: list[int], tools: list[str], limits: dict, env: dict) -> None:
        self.tools, self.limits, self.env = tools, limits, env
        self.ch = socket.socket(fileno=fds[0])
        os.dup2(fds[1], 1)
        os.dup2(fds[2], 2)
        for fd in fds[1:]:
            os.close(fd)
        self.answer: list = []
        self.pid = os.getpid()

    def start(self, workdir: str, copy_from: str | None) -> None:
        os.setpgid(0, 0)  # own process group: the host kills a step's whole tree with killpg
        self.pid = os.getpid()
        if copy_from:
            shutil.copytree(copy_from, workdir, symlinks=True)
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
        os.environ["HOME"] = workdir
        if not self.env:
            self.env.update({"__name__": "__main__", "__builtins__": builtins})
        self._install_stubs()
        send_msg(self.ch, {"op": "hello", "pid": os.getpid(), "uid": os.getuid()})
        self.serve()

    def _install_stubs(self) -> None:
        """Stubs find the channel through ``_CURRENT``, so references kept in a fork still work."""
        _CURRENT[:] = [self]
        for name in self.tools:
            self.env[name] = _tool_stub(name)
        self.env["final_answer"] = final_answer
        self.env["ToolError"] = ToolError

    def serve(self) -> None:
        while True:
            try:
                msg, fds, _ = recv_msg(self.ch)
            except (EOFError, OSError):
                os._exit(0)
            op = msg.get("op")
            if op == "run":
                send_msg(self.ch, self.run_step(str(msg.get("code", ""))))
            elif op == "fork":
                self.fork(msg["workdir"], fds)
            elif op == "close":
                os._exit(0)

    def run_step(self, code: str) -> dict:
        self._raise_cpu_budget()
        self.answer.clear()
        result: dict = {"op": "done", "error": None, "exit_code": None}
        linecache.cache["<step>"] = (len(code), None, code.splitlines(True), "<step>")
        try:
            exec(compile(code, "<step>", "exec"), self.env)
        except _FinalAnswer:
            pass
        except SystemExit as exc:
            code_ = exc.code
            result["exit_code"] = code_ if isinstance(code_, int) else (0 if code_ is None else 1)
        except BaseException as exc:  # noqa: BLE001 - model code may raise anything
            result["error"] = format_error(exc)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if os.getpid() != self.pid:  # a child model code forked: it must not speak the protocol
            os._exit(0 if result["error"] is None else 1)
        result["is_final"] = bool(self.answer)
        result["final_answer"] = self.answer[0] if self.answer else None
        return result

    def _raise_cpu_budget(self) -> None:
        """Give each step ``cpu_seconds`` more CPU (soft limit, SIGXCPU), never past the hard cap."""
        use = resource.getrusage(resource.RUSAGE_SELF)
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        want = math.ceil(use.ru_utime + use.ru_stime) + int(self.limits["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (want if hard < 0 else min(want, hard), hard))

    def fork(self, workdir: str, fds: list[int]) -> None:
        """Double fork: the copy is reparented to the zygote (subreaper), we reap the middle one."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            mid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            send_msg(self.ch, {"op": "fork_failed", "error": str(exc)})
            return
        if mid == 0:
            try:
                if os.fork():
                    os._exit(0)
            except OSError:
                os._exit(1)
            old = os.getcwd()
            self.ch.close()
            Worker(fds, self.tools, self.limits, self.env).start(workdir, copy_from=old)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(mid, 0)
        ok = os.waitstatus_to_exitcode(status) == 0
        send_msg(self.ch, {"op": "forked"} if ok else {"op": "fork_failed", "error": "fork failed"})


_CURRENT: list[Worker] = []


def _tool_stub(name: str):
    def call(*args, **kwargs):
        if os.getpid() != _CURRENT[0].pid:
            raise ToolError("tools can only be called from the sandbox's main process")
        ch = _CURRENT[0].ch
        send_msg(ch, {"op": "tool", "name": name, "args": list(args), "kwargs": kwargs})
        reply, _, _ = recv_msg(ch)
        if not reply.get("ok"):
            raise ToolError(reply.get("error", "tool failed"))
        return reply.get("value", "")

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Calls the host tool {name!r}; returns its result as a string."
    return call


def final_answer(value=None):
    """Record the episode's answer (a string, else JSON, else str()) and end this step."""
    if not isinstance(value, str):
        try:
            value = json.dumps(value)
        except (TypeError, ValueError):
            value = str(value)
    _CURRENT[0].answer[:] = [value]
    raise _FinalAnswer


def format_error(exc: BaseException, max_lines: int = 30) -> str:
    """The model-facing traceback: frames of the step only (not this file), last lines kept."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-max_lines:])


if __name__ == "__main__":
    zygote(json.loads(sys.argv[1]))
