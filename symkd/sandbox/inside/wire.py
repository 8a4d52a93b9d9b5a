"""Frames between the sandbox and the host: a 4-byte big-endian length, then UTF-8 JSON."""

from __future__ import annotations

import json
import re
import socket
import struct


class ToolError(RuntimeError):
    """A host-side tool raised; the message is the tool's error."""


ToolError.__module__ = "__main__"  # model-facing tracebacks name it "ToolError", as when one script ran as __main__


MAX_FRAME = 16 << 20  # from the host (trusted)
OUT_FRAME = 1 << 20  # to the host: protocol.MAX_FRAME, over which the host ends the step
OUT_NESTING = 60  # protocol.MAX_NESTING less the frame's own levels
_ANC = socket.CMSG_SPACE(8 * 4)

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
