"""A worker: one episode's interpreter state, its steps, forks and tool stubs."""

from __future__ import annotations

import builtins
import json
import linecache
import math
import os
import resource
import shutil
import socket
import sys
import traceback

from .wire import ToolError, fit_frame, recv_msg, send_msg, tool_frame

_HERE = os.path.dirname(os.path.abspath(__file__))


class _FinalAnswer(BaseException):
    """Ends a step; a BaseException so ``except Exception`` in model code does not swallow it."""


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
        """Double fork: the copy is reparented to the zygote (subreaper), we reap the middle one.

        A fork gets its own ``cpu_seconds`` like a step: a root forked once per task pays each
        fork's page-table copy in its own CPU time, which would otherwise reach the soft limit
        set by its last step (SIGXCPU after some thousands of forks). The hard cap still holds.
        """
        self._raise_cpu_budget()
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
    """The model-facing traceback: frames of the step only (not this package's), last lines kept."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.dirname(os.path.abspath(f.filename)) != _HERE]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    text = "".join(lines).rstrip().splitlines()
    return "\n".join(text[-max_lines:])
