"""One sandbox container: a bwrap (or plain) process tree running the zygote, shared by forks.

The root ``Sandbox`` and its forks are workers of one container; it is killed when the last of
them closes. The container reads its zygote's control channel and its workers' data channels
through :class:`~symkd.sandbox.protocol.FrameReader` (every frame checked, no read blocking
past a deadline), keeps the host pids of its live workers, and after a worker is discarded
kills every process of the container that no live worker owns (:mod:`symkd.sandbox.procs`).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from symkd.errors import UserError
from symkd.sandbox import procs, seccomp, tidy
from symkd.sandbox.launch import BOX_MOUNT, INSIDE, RLIMIT_WARNING, bwrap_command, check_available, clean_env, container_uid
from symkd.sandbox.protocol import FrameReader, ProtocolError, encode, send_frame
from symkd.sandbox.limits import SandboxError, SandboxLimits

START_TIMEOUT = 30.0


@dataclass
class Channel:
    """A worker as the host sees it: its data channel, output pipes, pids (host and in-sandbox)."""

    reader: FrameReader
    out_fd: int
    err_fd: int
    pid: int
    ns_pid: int
    workdir: Path  # as the host reaches it
    inside: str  # as the sandbox sees it

    @property
    def sock(self) -> socket.socket:
        return self.reader.sock

    def close(self) -> None:
        self.sock.close()
        for fd in (self.out_fd, self.err_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Container:
    """A bwrap (or plain) process tree whose first process is the zygote."""

    def __init__(self, mode: str, limits: SandboxLimits, tools: list[str], bwrap: str | None = None):
        bwrap_path = check_available(mode, bwrap)
        if mode == "rlimit":
            warnings.warn(RLIMIT_WARNING, RuntimeWarning, stacklevel=4)
        self.mode, self.limits, self.users, self.exits = mode, limits, 0, {}
        self.live: set[int] = set()  # host pids of the workers open on this container
        self.watched: set[int] = set()  # their in-sandbox pids, whose exit statuses are kept
        self.uid = container_uid() if os.geteuid() == 0 else os.getuid()
        self.zygote_pid, self.host_dir, self.proc, self.log, self.zygote = None, None, None, None, None
        self._next = 0
        tidy.sweep_once()
        tidy.register(self)
        try:
            self._prepare_box()
            self._start(bwrap_path, tools)
        except BaseException:
            self.kill()
            raise

    def _prepare_box(self) -> None:
        """rlimit: a host folder (named after its owner) holds the box. bwrap: nothing on disk."""
        if self.mode != "rlimit":
            self.box_inside = BOX_MOUNT
            return
        self.host_dir = tidy.make_dir()
        self.box = self.host_dir / "box"
        (self.box / ".tmp").mkdir(parents=True)
        self.box_inside = str(self.box)
        if os.geteuid() == 0:  # the container's uid may pass through (not list) the host dir
            os.chmod(self.host_dir, 0o711)
            for path in (self.box, self.box / ".tmp"):
                os.chown(path, self.uid, self.uid)

    def _start(self, bwrap_path: str | None, tools: list[str]) -> None:
        host, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.zygote = host
        self.reader = FrameReader(host, "zygote")
        cfg = {"fd": peer.fileno(), "limits": self.limits.for_worker(), "tools": tools, "uid": self.uid,
               "seccomp": self._filter(), "box": self.box_inside}  # fmt: skip
        if bwrap_path:
            argv, _, env = bwrap_command(bwrap_path, self.limits.tmp_mb, self.limits.work_mb)
            cwd = "/"
        else:  # a copy of the package in a folder of its own (in place, symkd/sandbox would shadow the stdlib)
            worker = self.host_dir / "symkd-sandbox" / "inside"
            shutil.copytree(INSIDE, worker, ignore=shutil.ignore_patterns("__pycache__"))
            argv, cwd = [sys.executable, "-s", "-B", str(worker)], str(self.box)
            env = clean_env(str(self.box), str(self.box / ".tmp"), {})
        self.log = tempfile.TemporaryFile(prefix=tidy.PREFIX)
        try:
            self.proc = subprocess.Popen(
                argv + [json.dumps(cfg)], pass_fds=(peer.fileno(),), env=env, cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
            )  # fmt: skip
        finally:
            peer.close()
        self._await_ready()

    def _filter(self) -> str | None:
        prog = seccomp.program()
        if prog is None and self.mode == "bwrap":
            raise UserError(f"the symkd sandbox has no seccomp filter for {os.uname().machine} (x86_64, aarch64)")
        return prog.hex() if prog else None

    def _await_ready(self) -> None:
        try:
            msg = self._zygote_frame(time.monotonic() + START_TIMEOUT)
        except ProtocolError as exc:
            raise SandboxError(f"sandbox did not start: {exc}") from None
        if msg is None or msg["op"] != "ready":
            raise SandboxError(f"sandbox did not start: {self._why(msg)}")
        if msg["uid"] != self.uid or self.reader.creds is None or self.reader.creds[1] != self.uid:
            raise SandboxError(f"sandbox runs as uid {msg['uid']}, not its own uid {self.uid}")
        self.zygote_pid = self.reader.creds[0]

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    # ------------------------------------------------------------ the control channel

    def _zygote_frame(self, deadline: float) -> dict | None:
        """The zygote's next frame other than ``exits`` (those are recorded), by ``deadline``."""
        while True:
            msg = self.reader.read(deadline)
            if msg is None or msg["op"] != "exits":
                return msg
            self._record_exits(msg["items"])

    def _record_exits(self, items: list) -> None:
        for pid, status in items:
            if pid in self.watched:
                self.exits[pid] = status

    def pump(self, spawning: bool = False) -> None:
        """Take in what the zygote reported (never blocks). A ``spawn_failed`` report is a
        SandboxError while ``spawning`` (else a late one, ignored); any other frame but
        ``exits`` is a ProtocolError."""
        self.reader.fill()
        while (msg := self.reader.frame()) is not None:
            if msg["op"] == "exits":
                self._record_exits(msg["items"])
            elif msg["op"] == "spawn_failed" and spawning:
                raise SandboxError(f"could not start a sandbox worker: {msg['error'][:200]}")
            elif msg["op"] != "spawn_failed":
                raise ProtocolError(f"unexpected {msg['op']!r} frame from the zygote")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.reader.eof

    # ------------------------------------------------------------ workers

    def new_worker(self, via: Channel | None = None) -> Channel:
        """A fresh worker from the zygote, or (``via`` a worker's channel) a fork of that worker.
        SandboxError if none comes; ProtocolError if ``via``'s worker broke the protocol."""
        self._next += 1
        name = f"w{self._next}"
        host, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        deadline = time.monotonic() + START_TIMEOUT
        request = encode({"op": "fork" if via else "spawn", "workdir": f"{self.box_inside}/{name}"})
        reader = FrameReader(host, "worker")  # SO_PASSCRED before the hello can come
        try:
            try:
                send_frame(via.sock if via else self.zygote, request, deadline, [peer.fileno(), out_w, err_w])
            finally:  # ours closed at once: a worker that dies before its hello is an EOF
                for fd in (out_w, err_w):
                    os.close(fd)
                peer.close()
            hello = self._await_hello(reader, via, deadline)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            host.close()
            raise
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        ch = Channel(reader, out_r, err_r, reader.creds[0], hello["pid"], self.workdir(name), f"{self.box_inside}/{name}")
        self.live.add(ch.pid)
        self.watched.add(ch.ns_pid)
        self.exits.pop(ch.ns_pid, None)
        return ch

    def _await_hello(self, reader: FrameReader, via: Channel | None, deadline: float) -> dict:
        """A fork: the old worker's verdict first, then the copy's hello. A spawn: the hello,
        unless the zygote reports ``spawn_failed`` (e.g. RLIMIT_NPROC) first."""
        if via is not None:
            verdict = via.reader.read(deadline)
            if verdict is not None and verdict["op"] not in ("forked", "fork_failed"):
                raise ProtocolError(f"unexpected {verdict['op']!r} frame while forking")
            if verdict is None or verdict["op"] != "forked":
                raise SandboxError(f"could not fork the sandbox worker: {self._why(verdict)}")
        hello = None
        poller = select.poll()
        for sock in (reader.sock, self.zygote):
            poller.register(sock, select.POLLIN)
        while hello is None and not reader.eof and self.alive() and (left := deadline - time.monotonic()) > 0:
            poller.poll(left * 1000)
            self.pump(spawning=via is None)
            reader.fill()
            hello = reader.frame()
        if hello is None or hello["op"] != "hello":
            raise SandboxError(f"could not start a sandbox worker: {self._why(hello)}")
        if reader.creds is None or reader.creds[1] != self.uid or reader.creds[0] <= 0:
            raise SandboxError("could not start a sandbox worker: its hello came from another uid")
        return hello

    def workdir(self, name: str) -> Path:
        """A worker's working directory as the host reaches it (bwrap: through the zygote's
        mount namespace, /proc/PID/root; it goes with the container)."""
        if self.mode == "rlimit":
            return self.box / name
        return Path(f"/proc/{self.zygote_pid}/root{BOX_MOUNT}/{name}")

    def _why(self, msg: dict | None) -> str:
        if msg and msg.get("error"):
            return str(msg["error"])[:200]
        if self.alive():
            return "no answer from the worker"
        tail = self.log_tail() if self.log is not None else ""
        return "the sandbox is gone" + (f" ({tail[-300:]})" if tail else "")

    def discard(self, ch: Channel) -> int | None:
        """Kill a worker and every process it left (strays of the container); its exit status."""
        self.live.discard(ch.pid)
        try:
            self.pump()
        except ProtocolError:
            self.kill()
        if ch.ns_pid not in self.exits and self.alive():
            try:
                os.killpg(ch.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.alive():
            procs.sweep(self.zygote_pid, self.uid if os.geteuid() == 0 else None, self.live)
        code = self._wait_exit(ch)
        self.watched.discard(ch.ns_pid)
        ch.close()
        if self.alive():  # its workdir goes too (forks' copies would fill the box)
            try:
                send_frame(self.zygote, encode({"op": "remove", "workdir": ch.inside}), time.monotonic() + 1.0)
            except (ProtocolError, OSError):
                pass
        return code

    def _wait_exit(self, ch: Channel, timeout: float = 3.0) -> int | None:
        stop = time.monotonic() + timeout
        while time.monotonic() < stop and self.alive():
            try:
                self.pump()
            except ProtocolError:
                self.kill()
                break
            if ch.ns_pid in self.exits:
                return self.exits.pop(ch.ns_pid)
            time.sleep(0.002)
        return None

    def kill(self) -> None:
        """Kill the whole tree (bwrap: the PID namespace dies with its init; rlimit: every
        process below the zygote, and of the container's uid when root), remove any folder."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                if self.mode == "rlimit":
                    procs.sweep(self.zygote_pid, self.uid if os.geteuid() == 0 else None, set(), timeout=1.0)
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait()
        finally:
            tidy.unregister(self)
            for handle in (self.zygote, self.log):
                if handle is not None:
                    handle.close()
            if self.host_dir is not None:
                shutil.rmtree(self.host_dir, ignore_errors=True)
