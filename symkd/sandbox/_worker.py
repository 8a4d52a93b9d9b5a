"""The process that runs model code, inside the sandbox. Stdlib only: it runs from a neutral
interpreter path (/opt/symkd-py) where nothing of symkd is importable.

Started as ``python -s -B _worker.py CONFIG_JSON``, it becomes the *zygote*: it drops root to
its container's own uid, sets no-new-privs, becomes the child subreaper and not dumpable, loads
the host-built seccomp filter (seccomp.py), applies the rlimits and serves ``spawn`` requests;
each forks a *worker* holding one episode's globals, and a worker double-forks itself for
``Sandbox.fork()``. Frames: a 4-byte big-endian length, then UTF-8 JSON; fds ride SCM_RIGHTS
from the host only. Model code shares its worker's process and socket, so the host (protocol.py)
checks every frame and believes nothing there but step data; exit statuses come from the
zygote, whose socket is closed in every worker.
"""

from __future__ import annotations

import builtins
import ctypes
import json
import linecache
import math
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import traceback

MAX_FRAME = 16 << 20  # from the host (trusted)
OUT_FRAME = 1 << 20  # to the host: protocol.MAX_FRAME, over which the host ends the step
OUT_NESTING = 60  # protocol.MAX_NESTING less the frame's own levels
_ANC = socket.CMSG_SPACE(8 * 4)
# Imported before dropping root in "rlimit" mode, where the interpreter may live under an
# unreadable /root; in "bwrap" mode the interpreter is bind-mounted readable and this is a warm-up.
PRELOAD = ("base64", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
           "encodings.idna", "enum", "fractions", "functools", "glob", "hashlib", "heapq", "itertools",
           "operator", "pathlib", "pprint", "random", "re", "statistics", "string", "subprocess",
           "tempfile", "textwrap", "time", "typing", "uuid", "zlib")


def send_msg(sock: socket.socket, obj: dict, fds: list[int] | tuple = (), data: bytes | None = None) -> None:
    """Send one frame (``data``: ``obj`` already encoded); ``fds`` ride along with the first byte."""
    data = json.dumps(obj, default=str).encode() if data is None else data
    frame = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame[:4]], list(fds))
        frame = frame[sent:]
    sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        data, anc, _flags, _addr = sock.recvmsg(n - len(buf), _ANC)
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]))
        if not data:
            raise EOFError("peer closed the channel")
        buf += data
    return buf


def recv_msg(sock: socket.socket) -> tuple[dict, list[int]]:
    """Receive one frame from the host: (message, passed fds)."""
    fds: list[int] = []
    (size,) = struct.unpack(">I", _recv_exact(sock, 4, fds))
    if size > MAX_FRAME:
        raise EOFError(f"frame of {size} bytes is over the {MAX_FRAME} limit")
    msg = json.loads(_recv_exact(sock, size, fds))
    if not isinstance(msg, dict):
        raise EOFError("frame is not a JSON object")
    return msg, fds


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
            try:
                shutil.copytree(copy_from, workdir, symlinks=True)
            except OSError:  # the box is full, say: leave no half copy, send no hello
                shutil.rmtree(workdir, ignore_errors=True)
                os._exit(1)
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
                msg, fds = recv_msg(self.ch)
            except (EOFError, OSError):
                os._exit(0)
            op = msg.get("op")
            if op == "run":
                result = self.run_step(str(msg.get("code", "")))
                send_msg(self.ch, result, data=fit_frame(result, ("final_answer", "error")))
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
            if isinstance(code_, int) and not isinstance(code_, bool):
                result["exit_code"] = code_ if -(1 << 31) <= code_ < 1 << 31 else 1
            else:
                result["exit_code"] = 0 if code_ is None else 1
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
        send_msg(ch, {}, data=tool_frame(name, args, kwargs))
        reply, _ = recv_msg(ch)
        if not reply.get("ok"):
            raise ToolError(reply.get("error", "tool failed"))
        return reply.get("value", "")

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Calls the host tool {name!r}; returns its result as a string."
    return call


def tool_frame(name: str, args: tuple, kwargs: dict) -> bytes:
    """A tool call as the host accepts it (size, nesting, no NaN), else ToolError here."""
    msg = {"op": "tool", "name": name, "args": list(args), "kwargs": {str(k): v for k, v in kwargs.items()}}
    try:
        data = json.dumps(msg, default=str, allow_nan=False).encode()
    except (ValueError, RecursionError) as exc:
        raise ToolError(f"the arguments of {name} are not JSON-safe ({exc})") from None
    if len(data) > OUT_FRAME or _nesting(data) > OUT_NESTING:
        raise ToolError(f"the arguments of {name} are too large or nested too deep "
                        f"(at most {OUT_FRAME} bytes, {OUT_NESTING} levels)")
    return data


def _nesting(data: bytes) -> int:
    depth = deepest = 0
    for bracket in re.findall(rb"[\[\]{}]", re.sub(rb'"(?:[^"\\]|\\.)*"', b"", data, flags=re.S)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def fit_frame(msg: dict, fields: tuple) -> bytes:
    """``msg`` encoded within OUT_FRAME: its longest text field is halved until it fits."""
    while True:
        data = json.dumps(msg, default=str).encode()
        longest = max(fields, key=lambda f: len(msg.get(f) or ""))
        text = msg.get(longest) or ""
        if len(data) <= OUT_FRAME or not text:
            return data
        msg[longest] = text[: len(text) // 2] + f"\n[... truncated {len(text) - len(text) // 2} characters]"


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
