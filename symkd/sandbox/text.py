"""Text that comes out of the sandbox, made safe to store, export and print.

Model code can produce any Python string: lone surrogates (``chr(0xd800)``), NUL, bytes that are
not UTF-8 (through its pipes), terminal escapes (ANSI colours, OSC 52 clipboard writes, a CR that
overwrites a line) and megabytes. Every string a :class:`~symkd.sandbox.StepResult` carries has
been through :func:`clean_text`: valid UTF-8 when encoded, no control character but tab and
newline (each other one, and each lone surrogate, becomes U+FFFD), and at most ``limit``
characters (the rest is cut, with a note saying how much).
"""

from __future__ import annotations

import re
from typing import Any

#: C0 controls but tab and newline, DEL, C1 controls, and surrogates (never valid alone in text)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: deepest nesting kept in tool-call arguments (deeper is cut to a note)
MAX_DEPTH = 16


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` with unsafe characters replaced and cut to ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"\n[... truncated {len(text) - limit} characters]"
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(REPLACEMENT, text.replace("\r\n", "\n"))


def clean_bytes(data: bytes, limit: int | None = None) -> str:
    """Bytes from a pipe as clean text (invalid UTF-8 becomes U+FFFD)."""
    return clean_text(data.decode("utf-8", errors="replace"), limit)


def clean_value(value: Any, limit: int, depth: int = 0) -> Any:
    """A JSON-like value with every string (keys too) cleaned; anything else becomes its text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return clean_text(value, limit)
    if depth >= MAX_DEPTH:
        return "[... nested too deep]"
    if isinstance(value, (list, tuple)):
        return [clean_value(v, limit, depth + 1) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k), limit): clean_value(v, limit, depth + 1) for k, v in value.items()}
    return clean_text(str(value), limit)
