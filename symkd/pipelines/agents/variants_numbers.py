"""Program variants, the numbers: which numbers a question and its program hold, which may change, new ones.

A :class:`Plan` says which question values may change (same kind and roundness) and which values
a draw must avoid; :func:`make_plan` gives the reason a problem admits no variant instead.
"""

from __future__ import annotations

import io
import math
import random
import re
import tokenize
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Sequence

from symkd.pipelines.agents import gold

NUM = re.compile(r"(?<![\w.])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?!\w|\.\d|,\d)")
_PERCENT_AFTER = re.compile(r"\s*(?:%|percent\b)", re.I)
_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)?|%")
ASSIGN = re.compile(r"^\s*(\w+)\s*=")
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ONES = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()  # fmt: skip
WORD_VALUE = {**{w: i + 1 for i, w in enumerate(_ONES)}, **_TENS}
NUMBER_WORD = re.compile(r"\b(?:" + "|".join(WORD_VALUE) + r")\b", re.I)
_EXACT: dict[str, tuple] = {
    **{w: (v,) for w, v in WORD_VALUE.items()},
    "hundred": (100,), "thousand": (1000,), "million": (1000000,), "half": (2, 0.5, 50), "halves": (2,),
    "twice": (2,), "double": (2,), "doubled": (2,), "doubles": (2,), "pair": (2,), "pairs": (2,), "both": (2,),
    "twins": (2,), "couple": (2,), "triple": (3,), "tripled": (3,), "thrice": (3,), "triplets": (3,),
    "third": (3,), "thirds": (3,), "quadruple": (4,), "fourth": (4,), "fifth": (5,), "sixth": (6,),
    "seventh": (7,), "eighth": (8,), "ninth": (9,), "tenth": (10,), "dozen": (12,), "dozens": (12,),
    "score": (20,), "%": (100, 0.01), "percent": (100, 0.01), "percentage": (100, 0.01), "ton": (2000,), "tons": (2000,),
    "daily": (24, 7, 30, 365), "weekend": (2,), "weekends": (2,), "biweekly": (2,),
}  # fmt: skip
_PREFIX: dict[str, tuple] = {
    "hour": (60, 24), "minute": (60,), "second": (60,), "day": (24, 7, 30, 31, 365), "week": (7, 52),
    "month": (12, 30, 4), "year": (12, 52, 365), "annual": (12, 52, 365), "decade": (10,), "centur": (100,),
    "dollar": (100,), "cent": (100,), "penn": (100,), "nickel": (5,), "dime": (10,), "quarter": (4, 0.25, 25),
    "foot": (12,), "feet": (12, 3), "inch": (12,), "yard": (3, 36), "pound": (16,), "ounce": (16,),
    "gallon": (4, 128), "quart": (4, 2), "pint": (2,), "mile": (5280,), "meter": (100, 1000),
    "metre": (100, 1000), "kilo": (1000,), "liter": (1000,), "litre": (1000,), "gram": (1000,),
}  # fmt: skip


@dataclass(frozen=True)
class Number:
    """A number written in the question, where it stands and whether it may change."""

    start: int
    end: int
    text: str
    value: Decimal
    percent: bool
    fixed: bool


@dataclass
class Plan:
    """What may change in a problem: question values -> (percent, decimal places); values to avoid."""

    changeable: dict[Decimal, tuple[bool, int]]
    avoid: set[Decimal] = field(default_factory=set)

    def draw(self, rng: random.Random, coarse: bool = False) -> dict[Decimal, Decimal] | None:
        """New values; ``coarse`` keeps each value's divisors up to 60 (48 -> a multiple of 12)."""
        mapping: dict[Decimal, Decimal] = {}
        for value in sorted(self.changeable):
            percent, places = self.changeable[value]
            new = _draw(value, percent, places, rng, self.avoid | set(mapping.values()), coarse)
            if new is None:
                return None
            mapping[value] = new
        return mapping

    def literal_map(self, mapping: dict[Decimal, Decimal]) -> dict[Decimal, Decimal]:
        """Code literal -> new literal: the numbers themselves, and a percentage's fraction (80 % -> 0.8)."""
        fractions = {v / 100: new / 100 for v, new in mapping.items() if self.changeable[v][0]}
        return {**fractions, **mapping}


def normalize_question(text: str) -> str:
    """Lower case, digits' commas dropped, every run of other characters one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", re.sub(r"(?<=\d),(?=\d)", "", text)).split())


def question_numbers(question: str) -> list[Number]:
    """Numbers written with digits; fixed: 0, 1, years, times, fractions and ratios, 100 %."""
    found = []
    for m in NUM.finditer(question):
        text, value = m.group(0), Decimal(m.group(0).replace(",", ""))
        percent = bool(_PERCENT_AFTER.match(question, m.end()))
        around = question[max(m.start() - 1, 0) : m.start()] + question[m.end() : m.end() + 1]
        year = len(text) == 4 and 1800 <= value <= 2100
        fixed = value in (0, 1) or year or bool(set(around) & set("/:")) or (percent and value == 100)
        found.append(Number(m.start(), m.end(), text, value, percent, fixed))
    return found


def implied_values(question: str) -> set[Decimal]:
    """Numbers the question's words imply: "twice" 2, "dozen" 12, "hours" 60 and 24, "%" 100, ..."""
    values: set[Any] = set()
    for word in _WORDS.findall(question.lower()):
        parts = word.split("-")
        if len(parts) == 2 and parts[0] in _TENS and parts[1] in _ONES[:9]:
            values.add(_TENS[parts[0]] + _ONES.index(parts[1]) + 1)
        for part in parts:
            values.update(_EXACT.get(part, ()))
            values.update(v for stem, vs in _PREFIX.items() if part.startswith(stem) for v in vs)
    return {Decimal(repr(v)) for v in values}


def code_literals(code: str) -> list[tuple[int, int, int, Decimal]]:
    """(line index, start offset, end offset, value) of every number literal in the code."""
    offsets = [0]
    for line in code.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NUMBER and not tok.string.lower().endswith("j"):
            (row, col), (erow, ecol) = tok.start, tok.end
            out.append((row - 1, offsets[row - 1] + col, offsets[erow - 1] + ecol, Decimal(tok.string.replace("_", ""))))
    return out


def make_plan(question: str, steps: Sequence[gold.GoldStep], values: dict[str, Decimal | None]) -> Plan | str:
    """What may change, or the reason the problem admits no variant (``values``: the program's variables)."""
    numbers = question_numbers(question)
    implied = implied_values(question)
    qvals = {n.value for n in numbers}
    fractions = {n.value / 100: n.value for n in numbers if n.percent}
    fixed = {n.value for n in numbers if n.fixed} | (qvals & implied)
    code = "\n".join(s.code for s in steps[:-1])
    by_line: dict[int, list[Decimal]] = {}
    for index, _, _, value in code_literals(code):
        by_line.setdefault(index, []).append(value)
    used: set[Decimal] = set()
    computed: set[Decimal] = set()  # values of the variables assigned on earlier lines
    for index, line in enumerate(code.splitlines()):
        for value in by_line.get(index, ()):
            if value in computed and value not in (0, 1):
                return "ambiguous_role"
            if value in qvals or value in fractions:
                used.add(value if value in qvals else fractions[value])
            elif value not in implied and value not in (0, 1):
                return "unmapped_literal"
        m = ASSIGN.match(line)
        if m and values.get(m.group(1)) is not None:
            computed.add(values[m.group(1)])  # type: ignore[arg-type]
    changeable = {v: (any(n.percent for n in numbers if n.value == v), max(decimal_places(n.text) for n in numbers if n.value == v))
                  for v in sorted(used - fixed)}  # fmt: skip
    if not changeable:
        return "nothing_to_vary"
    literals = {value for vs in by_line.values() for value in vs}
    return Plan(changeable, qvals | implied | literals | {Decimal(0), Decimal(1)})


def decimal_places(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _draw(value: Decimal, percent: bool, places: int, rng: random.Random, avoid: set[Decimal],
          coarse: bool) -> Decimal | None:  # fmt: skip
    """A value of the same kind and roundness, about half to one and a half times the old one."""
    unit = Decimal(1).scaleb(-places)
    n = int(value / unit)
    step = next((s for s in (1000, 500, 100, 50, 25, 10, 5) if n % s == 0 and n // s >= 3), 1)
    step = max(step, math.gcd(n, 60)) if coarse else step
    low = max(1 if places else 2, -(-n // 2))
    high = max(n * 3 // 2, n + 4 * step)
    if percent and value < 100:
        high = min(high, int(Decimal(99) / unit))
    first = -(-low // step) * step
    choices = [c for c in range(first, high + 1, step) if c != n and c * unit not in avoid]
    return rng.choice(choices) * unit if choices else None
