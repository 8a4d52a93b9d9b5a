"""``Sandbox``: one episode's worker; run steps, call host tools, fork the state."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.sandbox import _worker
from symkd.sandbox.launch import Channel, Container
from symkd.sandbox.types import SandboxError, SandboxLimits, StepResult

RESERVED = {"final_answer", "ToolError"}


class _Capped:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = max(0, self.limit - len(self.data))
        self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.data.decode("utf-8", errors="replace")
        return text + (f"\n[... truncated {self.dropped} bytes]\n" if self.dropped else "")


class Sandbox:
    """An OS-isolated Python worker holding one episode's globals between steps.

    After a step times out or the worker dies (memory, SIGXCPU, ``os._exit``), the result says so
    and the *next* ``run`` starts a fresh worker (empty globals, empty workdir) and sets
    ``restarted``: the episode goes on, its Python state does not.
    """

    def __init__(self, limits: SandboxLimits | None = None,
                 tools: Mapping[str, Callable[..., Any]] | None = None,
                 mode: str = "bwrap", *, bwrap: str | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.tools = dict(tools or {})
        bad = [n for n in self.tools if not n.isidentifier() or n in RESERVED]
        if bad:
            raise UserError(f"tool names must be Python identifiers other than {sorted(RESERVED)}: {bad}")
        self.mode, self._bwrap, self._closed = mode, bwrap, False
        self._container = self._new_container()
        try:
            self._ch: Channel | None = self._container.new_worker()
        except BaseException:
            self._container.kill()
            raise

    def _new_container(self) -> Container:
        container = Container(self.mode, self.limits, list(self.tools), self._bwrap)
        container.users += 1
        return container

    # ------------------------------------------------------------ public API

    @property
    def workdir(self) -> Path | None:
        """The worker's working directory on the host (inputs in, outputs out)."""
        return self._ch.workdir if self._ch else None

    @property
    def uid(self) -> int:
        """The uid model code runs as: this sandbox's own (symkd's uid when symkd is not root)."""
        return self._container.uid

    @property
    def pid(self) -> int | None:
        """Host pid of the worker (also its process group id)."""
        return self._ch.pid if self._ch else None

    def run(self, code: str) -> StepResult:
        """Run one step of model code in this episode's globals."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        restarted = self._ch is None
        if restarted:
            self._restart()
        result = StepResult(restarted=restarted)
        began = time.monotonic()
        try:
            _worker.send_msg(self._ch.sock, {"op": "run", "code": code})
        except OSError:
            self._worker_died(result)
        else:
            self._drive(result)
        result.seconds = round(time.monotonic() - began, 4)
        return result

    def fork(self) -> Sandbox:
        """A new Sandbox whose worker is an os.fork() of this one: same globals, a copy of the
        workdir. The two are independent from then on; closing either leaves the other running."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        if self._ch is None:
            self._restart()
        child = object.__new__(Sandbox)
        child.limits, child.tools, child.mode, child._bwrap = self.limits, self.tools, self.mode, self._bwrap
        child._closed, child._container = False, self._container
        child._ch = self._container.new_worker(via=self._ch.sock)
        self._container.users += 1
        return child

    def close(self) -> None:
        """Kill this worker (its process group); the container goes with its last worker."""
        if self._closed:
            return
        self._closed = True
        self._discard_worker()
        self._container.users -= 1
        if self._container.users <= 0:
            self._container.kill()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # ------------------------------------------------------------ one step

    def _drive(self, result: StepResult) -> None:
        ch, box = self._ch, self._container
        out, err = _Capped(self.limits.output_bytes), _Capped(self.limits.output_bytes)
        sel = selectors.DefaultSelector()
        sel.register(ch.sock, selectors.EVENT_READ, "ctl")
        sel.register(ch.out_fd, selectors.EVENT_READ, out)
        sel.register(ch.err_fd, selectors.EVENT_READ, err)
        sel.register(box.zygote, selectors.EVENT_READ, "zygote")
        deadline = time.monotonic() + self.limits.step_timeout
        done: dict | None = None
        try:
            while done is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._timed_out(result, out, err)
                for key, _ in sel.select(min(left, 0.5)):
                    if isinstance(key.data, _Capped):
                        _read_into(key.data, key.fd, sel)
                    elif key.data == "zygote":
                        box.pump()
                    else:
                        msg = box._read_one(ch.sock, max(left, 0.001))
                        if msg is None:
                            return self._worker_died(result, out, err)
                        if msg.get("op") == "tool":
                            began = time.monotonic()
                            self._call_tool(msg, result)
                            deadline += time.monotonic() - began
                        elif msg.get("op") == "done":
                            done = msg
                if done is None and (ch.ns_pid in box.exits or not box.alive() or _eof(ch.sock)):
                    return self._worker_died(result, out, err)
        finally:
            sel.close()
        _drain(ch, out, err)
        result.stdout, result.stderr = out.text(), err.text()
        result.error, result.exit_code = done.get("error"), done.get("exit_code")
        result.is_final, result.final_answer = bool(done.get("is_final")), done.get("final_answer")

    def _call_tool(self, msg: dict, result: StepResult) -> None:
        """Run a host tool for the sandboxed code; errors go back as the exception message."""
        name, args, kwargs = msg.get("name"), msg.get("args") or [], msg.get("kwargs") or {}
        call: dict[str, Any] = {"name": name, "args": args, "kwargs": kwargs}
        fn = self.tools.get(name) if isinstance(name, str) else None
        try:
            if fn is None:
                raise LookupError(f"no tool named {name!r}")
            value = fn(*args, **kwargs)
            value = value if isinstance(value, str) else str(value)
            reply, call["result"] = {"ok": True, "value": value}, value
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's information
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            call["error"] = reply["error"]
        result.tool_calls.append(call)
        try:
            _worker.send_msg(self._ch.sock, reply)
        except OSError:
            pass

    def _timed_out(self, result: StepResult, out: _Capped, err: _Capped) -> None:
        result.timed_out = True
        self._worker_died(result, out, err)
        result.error = (f"TimeoutError: the step ran over {self.limits.step_timeout:g} s (wall clock); "
                        "the worker was killed and its Python state is lost")

    def _worker_died(self, result: StepResult, out: _Capped | None = None, err: _Capped | None = None) -> None:
        ch = self._ch
        if out is not None:
            _drain(ch, out, err)
            result.stdout, result.stderr = out.text(), err.text()
        code = self._discard_worker()
        result.worker_died, result.exit_code = True, code
        how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit status {code}"
        result.error = f"SandboxError: the worker died ({how}); its Python state is lost"

    # ------------------------------------------------------------ worker lifecycle

    def _discard_worker(self) -> int | None:
        """Kill the worker's process group, wait for it to go, return its exit status."""
        ch, self._ch = self._ch, None
        if ch is None:
            return None
        box = self._container
        box.pump()
        if ch.ns_pid not in box.exits and _is_alive(ch.pid):
            try:
                os.killpg(ch.pid, signal.SIGKILL)
            except OSError:
                pass
        code = _wait_gone(box, ch)
        ch.close()
        return code

    def _restart(self) -> None:
        if not self._container.alive():
            self._container.users -= 1
            if self._container.users <= 0:
                self._container.kill()
            self._container = self._new_container()
        self._ch = self._container.new_worker()


def _read_into(buf: _Capped, fd: int, sel: selectors.BaseSelector) -> None:
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return
    if chunk:
        buf.add(chunk)
    else:
        sel.unregister(fd)


def _drain(ch: Channel, out: _Capped, err: _Capped, budget: float = 0.2) -> None:
    """Read what the step left in its pipes (bounded: a background writer cannot stall us)."""
    stop = time.monotonic() + budget
    for fd, buf in ((ch.out_fd, out), (ch.err_fd, err)):
        while time.monotonic() < stop:
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            buf.add(chunk)


def _eof(sock: socket.socket) -> bool:
    """True once the worker's end of the control socket is closed (checked without blocking)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _wait_gone(box: Container, ch: Channel, timeout: float = 3.0) -> int | None:
    stop = time.monotonic() + timeout
    while time.monotonic() < stop:
        box.pump()
        if ch.ns_pid in box.exits:
            return box.exits.pop(ch.ns_pid)
        if not _is_alive(ch.pid) and not box.alive():
            return None
        time.sleep(0.005)
    return None
