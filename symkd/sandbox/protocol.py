"""The parent's side of the sandbox protocol. Everything read from a container is hostile.

A container talks to the parent on two kinds of channel:

* the zygote's socket, the *control* channel: ``ready``, ``exits`` (worker exit statuses) and
  ``spawn_failed``. Its other end lives in the zygote, a process of its own that model code
  cannot reach: the fd is closed in every worker, the zygote is not dumpable, and the seccomp
  filter denies ptrace, pidfd_getfd and process_vm_readv/writev.
* each worker's socket, a *data* channel: model code runs in that process, so it can write
  anything there (``import __main__`` finds the socket). Only step data travels on it
  (``hello``, ``tool``, ``done``, ``forked``, ``fork_failed``), and nothing on it is taken as a
  fact about processes: a worker's host pid comes from the kernel (SCM_CREDENTIALS), exit
  statuses only from the zygote.

Every frame, on either channel, is checked before it is used: at most :data:`MAX_FRAME` bytes
(the 4-byte header is checked before the body is read), UTF-8 JSON nested at most
:data:`MAX_NESTING` deep, no file descriptors, an ``op`` its channel allows and exactly that op's
fields with the right types (ints within range). Reads never block: frames are assembled from
non-blocking reads under the caller's deadline, so a peer that announces 40 bytes and sends one a
second costs the step its deadline and no more; writes to a peer that does not read give up at
the deadline too. Any violation raises :class:`ProtocolError`.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import time
from typing import Any

MAX_FRAME = 1 << 20
MAX_NESTING = 64
_ANC = socket.CMSG_SPACE(16 * 4) + socket.CMSG_SPACE(12)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")
_INT32 = (-(1 << 31), (1 << 31) - 1)
_STR, _INT, _BOOL, _LIST, _DICT = "str", "int", "bool", "list", "dict"

#: channel -> op -> field -> type ("?" suffix: may be null)
SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    "zygote": {"ready": {"uid": _INT}, "exits": {"items": _LIST}, "spawn_failed": {"error": _STR}},
    "worker": {
        "hello": {"pid": _INT, "uid": _INT},
        "tool": {"name": _STR, "args": _LIST, "kwargs": _DICT},
        "done": {"error": _STR + "?", "exit_code": _INT + "?", "is_final": _BOOL, "final_answer": _STR + "?"},
        "forked": {},
        "fork_failed": {"error": _STR},
    },
}
_TYPES = {_STR: str, _INT: int, _BOOL: bool, _LIST: list, _DICT: dict}


class ProtocolError(Exception):
    """A container broke the protocol (or stopped reading it); the message says how."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes, channel: str) -> dict[str, Any]:
    """One frame's body -> a checked message, or ProtocolError."""
    if data.count(b"[") + data.count(b"{") > MAX_NESTING and _nesting(data) > MAX_NESTING:
        raise ProtocolError(f"a frame nested deeper than {MAX_NESTING}")
    try:
        msg = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"a frame that is not JSON ({type(exc).__name__})") from None
    return check(msg, channel)


def _nesting(data: bytes) -> int:
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b"", data)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def check(msg: Any, channel: str) -> dict[str, Any]:
    """``msg`` if it is an op of ``channel`` with exactly its fields, of the right types."""
    ops = SCHEMAS[channel]
    if not isinstance(msg, dict) or msg.get("op") not in ops:
        op = msg.get("op") if isinstance(msg, dict) else type(msg).__name__
        raise ProtocolError(f"unexpected {str(op)[:40]!r} frame on the {channel} channel")
    fields = ops[msg["op"]]
    if set(msg) != {"op", *fields}:
        raise ProtocolError(f"{msg['op']!r} frame with fields {sorted(map(str, msg))[:8]}")
    for name, kind in fields.items():
        _check_field(msg["op"], name, kind, msg[name])
    if msg["op"] == "exits":
        _check_exits(msg["items"])
    return msg


def _check_field(op: str, name: str, kind: str, value: Any) -> None:
    if value is None and kind.endswith("?"):
        return
    want = _TYPES[kind.rstrip("?")]
    if type(value) is not want:  # noqa: E721 - exact: a bool is not an int here
        raise ProtocolError(f"{op!r} frame: {name} is {type(value).__name__}, not {want.__name__}")
    if want is int and not _INT32[0] <= value <= _INT32[1]:
        raise ProtocolError(f"{op!r} frame: {name} out of range")


def _check_exits(items: list) -> None:
    for item in items:
        ok = isinstance(item, list) and len(item) == 2 and all(type(v) is int for v in item)  # noqa: E721
        if not ok or not (0 < item[0] <= _INT32[1] and -64 <= item[1] <= 255):
            raise ProtocolError(f"'exits' frame with a bad item {str(item)[:40]}")


class FrameReader:
    """Frames from one container socket, assembled from non-blocking reads."""

    def __init__(self, sock: socket.socket, channel: str) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock, self.channel = sock, channel
        self.buf = bytearray()
        self.eof = False
        self.creds: tuple[int, int] | None = None  # (pid, uid) of the last sender, from the kernel

    def fill(self) -> None:
        """Read what is there now (never blocks); EOF sets ``eof``."""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(65536, _ANC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.eof = True
            return
        if self._ancillary(anc):
            raise ProtocolError(f"file descriptors sent on the {self.channel} channel")
        if not data:
            self.eof = True
        self.buf += data

    def _ancillary(self, anc: list) -> bool:
        """Record the sender's credentials; close passed fds (True when there were any)."""
        got_fds = False
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got_fds = True
                for fd in struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]):
                    os.close(fd)
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
                pid, uid, _gid = struct.unpack("iII", payload[:12])
                self.creds = (pid, uid)
        return got_fds

    def frame(self) -> dict[str, Any] | None:
        """The next complete, checked frame, or None while it is still incomplete."""
        if len(self.buf) < 4:
            return None
        (size,) = struct.unpack(">I", self.buf[:4])
        if size > MAX_FRAME:
            raise ProtocolError(f"a frame of {size} bytes (the limit is {MAX_FRAME})")
        if len(self.buf) < 4 + size:
            return None
        data = bytes(self.buf[4 : 4 + size])
        del self.buf[: 4 + size]
        return decode(data, self.channel)

    def read(self, deadline: float) -> dict[str, Any] | None:
        """The next frame by ``deadline`` (monotonic); None on EOF or when time is up."""
        while True:
            msg = self.frame()
            if msg is not None or self.eof:
                return msg
            if not wait_for(self.sock, select.POLLIN, deadline):
                return None
            self.fill()


def wait_for(sock: socket.socket | int, events: int, deadline: float) -> bool:
    """True once ``sock`` is ready for ``events`` (or hung up), False at ``deadline``. poll, not
    select: a process with many sandboxes has fds past select's limit of 1024."""
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(left * 1000))


def send_frame(sock: socket.socket, data: bytes, deadline: float, fds: list[int] | tuple = ()) -> None:
    """Send one framed message (``fds`` with its first byte) by ``deadline``, or ProtocolError."""
    frame = struct.pack(">I", len(data)) + data
    view = memoryview(frame)
    while view:
        try:
            sent = socket.send_fds(sock, [view[:4]], list(fds)) if fds else sock.send(view)
        except (BlockingIOError, InterruptedError):
            if not wait_for(sock, select.POLLOUT, deadline):
                raise ProtocolError("the sandbox stopped reading its channel") from None
            continue
        fds = ()
        view = view[sent:]


def encode(obj: dict[str, Any]) -> bytes:
    """A message as a frame body (what the worker's ``recv_msg`` reads)."""
    return json.dumps(obj, default=str).encode()
