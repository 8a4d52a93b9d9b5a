"""Small pure-Python helpers the local backends share (no torch, no llama.cpp imports)."""

from __future__ import annotations

from typing import Any, Sequence


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, int] | None:
    """(start, end) of the earliest stop string in ``text`` (the longest on a tie), or None."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits:
        return None
    start, stop = min(hits, key=lambda h: (h[0], -len(h[1])))
    return start, start + len(stop)


def tokens_covering(decode: Any, tokens: Sequence[int], n_chars: int) -> int:
    """Fewest leading tokens whose decoded text is at least ``n_chars`` long (binary search)."""
    if n_chars <= 0:
        return 0
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(tokens[:mid])) >= n_chars:
            hi = mid
        else:
            lo = mid + 1
    return hi
