"""GSM8K tasks: reading task files, the reference answer, and matching a model's answer to it.

A task file is JSONL of ``{"question", "answer"}`` where the answer is a worked solution ending
in ``#### final`` (GSM8K's format) or a bare final answer; an optional ``id`` is kept, otherwise
the id is ``<file stem>:<line>``. Answers match numerically: commas, currency and unit words,
trailing periods, percent signs, ``x.0`` and ``.5`` decimals and scientific notation are
handled, and equality allows float round-off (relative 1e-6), so "$1,200.00" matches 1200 and
``0.30000000000000004`` matches 0.3.

A chain-of-thought answer is the number right after ``####`` (the first one: ``#### 18 ... 7``
is 18); without ``####``, ``\\boxed{}`` or "the answer is"; only a completion that ended on its
own falls back to its last number; one cut off at the token limit (typically looping) has no
answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable

from symkd.errors import UserError
from symkd.jsonio import read_jsonl

_NUMBER = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_FINAL = re.compile(r"####[ \t]*([^\n]*)")
#: relative tolerance of numeric equality (float round-off, not rounding by the model)
REL_TOL = 1e-6
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*([^\n]*)", re.I)
_BOXED = re.compile(r"\\boxed\{([^}]*)\}")


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    solution: str  # the worked solution ("" when the file gives only the final answer)
    answer: str  # the reference final answer, as written after ####

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "question": self.question, "solution": self.solution, "answer": self.answer}


def reference_answer(answer_field: str) -> tuple[str, str]:
    """(worked solution, final answer) from a GSM8K answer field."""
    m = _FINAL.search(answer_field)
    if not m:
        return "", answer_field.strip()
    return answer_field[: m.start()].strip(), m.group(1).strip()


def read_tasks(path: str | Path, *, limit: int | None = None, offset: int = 0) -> list[Task]:
    """Tasks of a JSONL file; a bad line is a one-line UserError naming file, line and field."""
    path = Path(path)
    tasks: list[Task] = []
    seen: set[str] = set()
    for lineno, obj in read_jsonl(path):
        for name in ("question", "answer"):
            if not isinstance(obj.get(name), (str, int, float)) or not str(obj[name]).strip():
                raise UserError(f"{path}:{lineno}: field {name!r} is missing or empty")
        task_id = str(obj.get("id") or f"{path.stem}:{lineno}")
        if task_id in seen:
            raise UserError(f"{path}:{lineno}: duplicate id {task_id!r}")
        seen.add(task_id)
        solution, final = reference_answer(str(obj["answer"]))
        tasks.append(Task(task_id, str(obj["question"]).strip(), solution, final))
    if not tasks:
        raise UserError(f"{path}: no tasks")
    return tasks[offset : None if limit is None else offset + limit]


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(str(text).replace("\u2212", "-"))


def _decimal(token: str) -> Decimal | None:
    try:
        value = Decimal(token.replace(",", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def to_number(text: str | int | float | None) -> Decimal | None:
    """The last number in ``text`` (commas, $, %, units ignored); None when there is none."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        text = repr(text)
    found = _numbers(str(text))
    return _decimal(found[-1]) if found else None


def extract_answer(completion: str, *, finished: bool = True) -> str | None:
    """The final answer a model wrote (see the module docstring); None when it gave none.

    ``finished`` is False for a completion cut off at the token limit: it then counts only
    with an explicit ``####`` or ``\\boxed{}`` answer.
    """
    m = _FINAL.search(completion)
    if m:
        found = _numbers(m.group(1))
        return found[0].replace(",", "") if found else None
    m = _BOXED.search(completion)
    if m:
        return m.group(1).strip()
    if not finished:
        return None
    matches = _ANSWER_IS.findall(completion)
    if matches and to_number(matches[-1]) is not None:
        return matches[-1].strip()
    number = to_number(completion)
    return None if number is None else str(number)


def answers_match(predicted: str | int | float | None, reference: str | int | float) -> bool:
    """Numeric equality of the two answers, up to float round-off (:data:`REL_TOL`)."""
    a, b = to_number(predicted), to_number(reference)
    if a is None or b is None:
        return predicted is not None and str(predicted).strip().lower() == str(reference).strip().lower()
    return a == b or abs(a - b) <= Decimal(str(REL_TOL)) * max(abs(a), abs(b))


def accuracy(pairs: Iterable[tuple[str | None, str]]) -> float:
    pairs = list(pairs)
    return sum(answers_match(p, r) for p, r in pairs) / len(pairs) if pairs else 0.0
