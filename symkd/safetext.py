"""Text from models (and other outside sources) made safe to store, write and print.

A model can answer anything: lone surrogates (``"\\ud800"`` is valid JSON but no UTF-8 file or
SQLite text can hold it), NUL, ANSI/OSC escape sequences that recolour or retitle a terminal,
line and paragraph separators that split "one line" for many readers, megabytes of text.

- :func:`valid_unicode` is applied where an answer enters symkd (every teacher's
  :class:`~symkd.teachers.messages.Completion`): lone surrogates become U+FFFD; everything else
  is kept as it was.
- :func:`shown` is for a terminal: control and invisible-formatting characters become visible
  escapes (``\\x1b``, ``\\u2028``) and long text is cut with a note of its length.
- :func:`json_escape_unsafe` escapes, inside JSON text, what ``ensure_ascii=False`` leaves raw.
"""

from __future__ import annotations

import re

_SURROGATES = re.compile("[\ud800-\udfff]")
#: C0 and C1 controls, DEL, line/paragraph separators, bidi overrides and isolates, lone surrogates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a no-op, and fast, for valid text)."""
    if _SURROGATES.search(text) is None:
        return text
    return _SURROGATES.sub("\ufffd", text)


def _visible(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, limit: int | None = 300, *, keep_newlines: bool = False) -> str:
    """``text`` as it may be printed: controls visible as escapes, at most ``limit`` characters.

    ``keep_newlines`` keeps ``\\n`` (and tabs) for multi-line output; everything else a
    terminal would act on is escaped.
    """
    text = str(text)
    cut = ""
    if limit is not None and len(text) > limit:
        cut = f"... ({len(text):,} characters)"
        text = text[:limit]
    if keep_newlines:
        pieces = text.split("\n")
        return "\n".join(_UNSAFE.sub(lambda m: m.group() if m.group() == "\t" else _visible(m), p) for p in pieces) + cut
    return _UNSAFE.sub(_visible, text) + cut


def json_escape_unsafe(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL, C1 controls, line
    separators, bidi controls and lone surrogates as ``\\uXXXX`` escapes: same value, safe to
    print and to encode as UTF-8. (``json.dumps`` already escapes C0 controls.)"""
    if _JSON_UNSAFE.search(text) is None:
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
