"""``Sandbox``: one episode's worker; run steps, call host tools, fork the state.

``run`` never raises for anything model code does: a timeout, a dead worker, a worker that
cannot be restarted, or a frame that breaks the protocol (see protocol.py) each end that step
with ``error`` set, and the next step gets a fresh worker. Every string of a result is clean
text (text.py).
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.sandbox.container import Channel, Container
from symkd.sandbox.protocol import ProtocolError, encode, send_frame
from symkd.sandbox.text import clean_bytes, clean_text, clean_value
from symkd.sandbox.limits import SandboxError, SandboxLimits, StepResult

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
        text = clean_bytes(bytes(self.data))
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
            self._ch: Channel | None = _start_worker(self._container)
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
        """Run one step of model code in this episode's globals (never raises but when closed)."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        result = StepResult(restarted=self._ch is None)
        began = time.monotonic()
        try:
            if self._ch is None:
                self._restart()
            self._step(code, result)
        except SandboxError as exc:  # no fresh worker could start (the container's budget, say)
            result.worker_died, result.error = True, clean_text(f"SandboxError: {exc}", self.limits.output_bytes)
        result.seconds = round(time.monotonic() - began, 4)
        return result

    def fork(self) -> Sandbox:
        """A new Sandbox whose worker is an os.fork() of this one: same globals, a copy of the
        workdir. The two are independent from then on; closing either leaves the other running.
        SandboxError when no copy can be made (this sandbox goes on)."""
        if self._closed:
            raise SandboxError("this sandbox is closed")
        if self._ch is None or not self._container.alive():
            self._discard_worker()
            self._restart()
        try:
            ch = self._container.new_worker(via=self._ch)
        except (ProtocolError, OSError) as exc:  # it broke the protocol, or is gone
            self._discard_worker()  # either way its next step starts afresh
            raise SandboxError(f"could not fork the sandbox worker: {exc}") from None
        except SandboxError:
            if self._ch.reader.eof or not self._container.alive():
                self._discard_worker()
            raise
        child = object.__new__(Sandbox)
        child.limits, child.tools, child.mode, child._bwrap = self.limits, self.tools, self.mode, self._bwrap
        child._closed, child._container, child._ch = False, self._container, ch
        self._container.users += 1
        return child

    def close(self) -> None:
        """Kill this worker (and its strays); the container goes with its last worker."""
        if self._closed:
            return
        self._closed = True
        self._container.users -= 1
        try:
            if self._container.users > 0:
                self._discard_worker()
        finally:
            if self._container.users <= 0:
                ch, self._ch = self._ch, None
                self._container.kill()
                if ch is not None:
                    ch.close()

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

    def _step(self, code: str, result: StepResult) -> None:
        out, err = _Capped(self.limits.output_bytes), _Capped(self.limits.output_bytes)
        try:
            deadline = time.monotonic() + self.limits.step_timeout
            send_frame(self._ch.sock, encode({"op": "run", "code": code}), deadline)
            done = self._drive(result, out, err, deadline)
        except ProtocolError as exc:
            return self._worker_died(result, out, err, violation=str(exc))
        except OSError:
            done = None
        if done is None:
            return self._worker_died(result, out, err)
        if done == "timeout":
            return self._timed_out(result, out, err)
        _drain(self._ch, out, err)
        cap = self.limits.output_bytes
        result.stdout, result.stderr = out.text(), err.text()
        result.error = clean_text(done["error"], cap) if done["error"] is not None else None
        result.exit_code, result.is_final = done["exit_code"], done["is_final"]
        if done["final_answer"] is not None:
            result.final_answer = clean_text(done["final_answer"], cap)

    def _drive(self, result: StepResult, out: _Capped, err: _Capped, deadline: float) -> dict | str | None:
        """Serve the step until its ``done`` frame (returned), "timeout", or None (worker gone)."""
        ch, box = self._ch, self._container
        sel = selectors.DefaultSelector()
        sel.register(ch.sock, selectors.EVENT_READ, "ctl")
        sel.register(ch.out_fd, selectors.EVENT_READ, out)
        sel.register(ch.err_fd, selectors.EVENT_READ, err)
        sel.register(box.zygote, selectors.EVENT_READ, "zygote")
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                for key, _ in sel.select(min(left, 0.5)):
                    if isinstance(key.data, _Capped):
                        _read_into(key.data, key.fd, sel)
                    elif key.data == "zygote":
                        box.pump()
                    else:
                        ch.reader.fill()
                while (msg := ch.reader.frame()) is not None:
                    if msg["op"] == "done":
                        return msg
                    if msg["op"] != "tool":
                        raise ProtocolError(f"unexpected {msg['op']!r} frame during a step")
                    reply, spent = self._call_tool(msg, result)
                    deadline += spent  # the tool's own time; replying is the step's
                    send_frame(ch.sock, encode(reply), deadline)
                if ch.reader.eof or ch.ns_pid in box.exits or not box.alive():
                    return None
        finally:
            sel.close()

    def _call_tool(self, msg: dict, result: StepResult) -> tuple[dict, float]:
        """Run a host tool for the sandboxed code: (the reply, seconds it took). A tool's
        exception goes back as its message."""
        cap = self.limits.output_bytes
        name, args, kwargs = msg["name"], clean_value(msg["args"], cap), clean_value(msg["kwargs"], cap)
        call: dict[str, Any] = {"name": clean_text(name, 200), "args": args, "kwargs": kwargs}
        fn, began = self.tools.get(name), time.monotonic()
        try:
            if fn is None:
                raise LookupError(f"no tool named {name!r}")
            value = fn(*args, **kwargs)
            value = value if isinstance(value, str) else str(value)
            reply, call["result"] = {"ok": True, "value": value}, clean_text(value, cap)
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's information
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            call["error"] = clean_text(reply["error"], cap)
        result.tool_calls.append(call)
        return reply, time.monotonic() - began

    def _timed_out(self, result: StepResult, out: _Capped, err: _Capped) -> None:
        result.timed_out = True
        self._worker_died(result, out, err)
        result.error = (f"TimeoutError: the step ran over {self.limits.step_timeout:g} s (wall clock); "
                        "the worker was killed and its Python state is lost")

    def _worker_died(self, result: StepResult, out: _Capped | None = None, err: _Capped | None = None,
                     violation: str | None = None) -> None:  # fmt: skip
        if out is not None and self._ch is not None:
            _drain(self._ch, out, err)
            result.stdout, result.stderr = out.text(), err.text()
        code = self._discard_worker()
        result.worker_died, result.exit_code = True, code
        if violation:
            result.error = clean_text(f"SandboxError: the sandbox broke the protocol ({violation}); "
                                      "the worker was killed and its Python state is lost", 2000)
        else:
            result.error = f"SandboxError: the worker died ({describe_exit(code)}); its Python state is lost"

    # ------------------------------------------------------------ worker lifecycle

    def _discard_worker(self) -> int | None:
        """Kill the worker and every process of the container no live worker owns; its status."""
        ch, self._ch = self._ch, None
        return self._container.discard(ch) if ch is not None else None

    def _restart(self) -> None:
        if not self._container.alive():
            new = self._new_container()  # if this fails, the dead container stays ours to close
            old, self._container = self._container, new
            old.users -= 1
            if old.users <= 0:
                old.kill()
        self._ch = _start_worker(self._container)


def _start_worker(box: Container) -> Channel:
    """A fresh worker from the zygote; anything that goes wrong is a SandboxError."""
    try:
        return box.new_worker()
    except (ProtocolError, OSError) as exc:
        raise SandboxError(f"could not start a sandbox worker: {exc}") from None


def describe_exit(code: int | None) -> str:
    """``killed by SIGKILL`` / ``exit status 3`` for any status, known signal or not."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


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
