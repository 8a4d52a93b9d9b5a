"""Scenarios: the tasks the student is tried on, from a dataset or written by the teacher.

A data file is JSONL of GSM8K-style ``{"question", "answer"}`` (read by the agents pipeline's
public :func:`read_tasks`) or of chat tasks ``{"messages": [..., {"role": "user"},
{"role": "assistant"}]}``: the last user message is the question, the last assistant message
the reference (a worked solution ending in ``#### final``, or a bare answer).

New scenarios are the teacher's: shown a scenario the student failed, it writes a similar
problem with new names and numbers and a worked solution ending in ``#### answer``
(template ``strategies/scenario``); one it wrote without a final answer is dropped.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.jsonio import read_jsonl
from symkd.pipelines.agents import read_tasks, reference_answer
from symkd.prompts import get_template
from symkd.stages import Stage
from symkd.teachers.messages import Request, Response

SCENARIO_TEMPLATE = "strategies/scenario"
_PROBLEM = re.compile(r"^\s*(?:new\s+)?problem\s*:\s*", re.I)
_SOLUTION = re.compile(r"\n\s*solution\s*:\s*", re.I)


@dataclass(frozen=True)
class Scenario:
    id: str
    question: str
    answer: str  # the reference final answer
    solution: str = ""  # the worked solution, when known
    source: str = "dataset"  # dataset | synthetic
    parent: str | None = None  # the failed scenario a synthetic one imitates
    round: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_scenarios(path: str | Path) -> list[Scenario]:
    """Every scenario of a data file; a bad file is a one-line UserError."""
    path = Path(path)
    first = next(read_jsonl(path), None)
    if first is None:
        raise UserError(f"{path}: no tasks")
    if "messages" not in first[1]:
        return [Scenario(t.id, t.question, t.answer, t.solution) for t in read_tasks(path)]
    return [_chat_scenario(path, lineno, obj) for lineno, obj in read_jsonl(path)]


def _chat_scenario(path: Path, lineno: int, obj: dict[str, Any]) -> Scenario:
    messages = obj.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise UserError(f"{path}:{lineno}: field 'messages' must be a list of {{role, content}} objects")
    last = {m.get("role"): str(m.get("content") or "").strip() for m in messages}
    if not last.get("user") or not last.get("assistant"):
        raise UserError(f"{path}:{lineno}: a chat task needs a user message and an assistant answer")
    solution, final = reference_answer(last["assistant"])
    return Scenario(str(obj.get("id") or f"{path.stem}:{lineno}"), last["user"], final, solution)


def sample_pool(scenarios: Sequence[Scenario], n: int, seed: int) -> list[Scenario]:
    """``n`` scenarios drawn with ``seed`` (file order kept); all of them when n >= len."""
    if n <= 0:
        raise UserError(f"--scenarios must be at least 1 (got {n})")
    if n >= len(scenarios):
        return list(scenarios)
    picked = sorted(random.Random(seed).sample(range(len(scenarios)), n))
    return [scenarios[i] for i in picked]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ScenarioAsk:
    """One new scenario asked for: in the likeness of ``parent``, its ``sample``-th, ``index``-th of the run."""

    parent: Scenario
    sample: int
    index: int


class ScenarioStage(Stage[ScenarioAsk, Scenario]):
    """Rows are :class:`ScenarioAsk` (see :meth:`rows`): one request for a new scenario each;
    the parse is the new synthetic scenario of round ``round_``, or None (:func:`parse_scenario`)."""

    kind = "strategies-scenario"
    name = "scenarios"

    def __init__(self, seed: int, round_: int = 0):
        self.seed, self.round = seed, round_

    @staticmethod
    def rows(failed: Sequence[Scenario], per_failure: int) -> list[ScenarioAsk]:
        """``per_failure`` asks in the likeness of each failed scenario."""
        pairs = [(s, j) for s in failed for j in range(per_failure)]
        return [ScenarioAsk(s, j, n) for n, (s, j) in enumerate(pairs)]

    def requests(self, rows: Sequence[ScenarioAsk]) -> list[Request]:
        template = get_template(SCENARIO_TEMPLATE)
        return [
            template.request(f"{a.parent.id}#new{a.sample}",
                             {"question": a.parent.question, "solution": a.parent.solution or f"#### {a.parent.answer}"},
                             seed=self.seed + a.sample, sample_index=a.sample)  # fmt: skip
            for a in rows
        ]

    def parse(self, row: ScenarioAsk, response: Response) -> Scenario | None:
        if not response.completions:
            return None
        return parse_scenario(response.completions[0].text, row.parent, row.index, self.round)


def parse_scenario(text: str, parent: Scenario, index: int, round_: int) -> Scenario | None:
    """The teacher's new problem and its final answer, or None when it wrote no usable pair."""
    body = _PROBLEM.sub("", text.strip(), count=1)
    parts = _SOLUTION.split(body, maxsplit=1)
    question = parts[0].strip()
    solution, final = reference_answer(parts[1] if len(parts) > 1 else "")
    if not final or len(question.split()) < 6 or question == parent.question or "####" not in text:
        return None
    if not re.search(r"\d", final) or len(final) > 20:
        return None
    return Scenario(f"{parent.id}#r{round_}new{index}", question, final, solution, "synthetic", parent.id, round_)
