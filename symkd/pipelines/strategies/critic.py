"""The rule critic for proposed strategies: general guidance, never the scenario's answer.

An item is a dict with the candidate ``text`` and its source scenario's ``question``,
``answer`` and ``solution``. A strategy is dropped when it

- contains the scenario's final answer as a number ("leaks-answer"),
- copies a number that appears in the problem or its solution ("copies-numbers"),
- copies a long run of the reference solution's words ("copies-solution"),
- is too short or too long to be one reusable piece of guidance ("too-short", "too-long").

The score is 1.0 for a kept strategy and 0.0 for a dropped one; ``details["reason"]`` names
the first rule that fired.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Sequence

from symkd.critics.base import Critic, Verdict

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9']+")


def numbers(text: str) -> set[Decimal]:
    out = set()
    for raw in _NUMBER.findall(text or ""):
        try:
            out.add(Decimal(raw.replace(",", "")).normalize())
        except InvalidOperation:
            continue
    return out


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall((text or "").lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class StrategyLeakCritic(Critic):
    name: ClassVar[str] = "strategy-rules"
    version: ClassVar[str] = "1"
    item_table: ClassVar[str] = "strategies"

    def __init__(self, min_words: int = 5, max_words: int = 60, copy_ngram: int = 6):
        self.min_words, self.max_words, self.copy_ngram = min_words, max_words, copy_ngram

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min_words": self.min_words, "max_words": self.max_words, "copy_ngram": self.copy_ngram}

    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        return [self._judge(item) for item in items]

    def _judge(self, item: dict[str, Any]) -> Verdict:
        reason = self.reason(item)
        return Verdict(0.0 if reason else 1.0, reason is None, {"reason": reason} if reason else {})

    def reason(self, item: dict[str, Any]) -> str | None:
        text = item.get("text") or ""
        words = len(text.split())
        if words < self.min_words:
            return "too-short"
        if words > self.max_words:
            return "too-long"
        found = numbers(text)
        if found & numbers(str(item.get("answer") or "")):
            return "leaks-answer"
        if found & (numbers(item.get("question") or "") | numbers(item.get("solution") or "")):
            return "copies-numbers"
        if _ngrams(text, self.copy_ngram) & _ngrams(item.get("solution") or "", self.copy_ngram):
            return "copies-solution"
        return None
