"""Proposal: the teacher turns a failed attempt into one short, general strategy.

The teacher sees the problem, the student's (wrong) answer and the reference solution
(template ``strategies/propose``) and writes one sentence; the first sentence-like line of
its answer is the candidate. Tags are topic words found in the problem and the strategy.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

from symkd.pipelines.strategies.scenarios import Scenario
from symkd.prompts import get_template
from symkd.stages import Stage
from symkd.teachers.messages import Request, Response

PROPOSE_TEMPLATE = "strategies/propose"
#: the template's prompt ends with these words; the teacher's continuation follows them
LEAD = "When"
MAX_CHARS = 400
_PREFIX = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])?\s*(?:\*\*)?(?:strategy|tip|rule|hint)?\s*(?:\*\*)?\s*:?\s*", re.I)

TOPICS = {
    "percent": ("percent", "%"), "fraction": ("half", "third", "quarter", "fraction", "/"),
    "rate": ("per hour", "per day", "per minute", "speed", "rate", "mph", "each hour"),
    "money": ("$", "cost", "price", "dollar", "pay", "earn", "cents", "profit"),
    "time": ("hour", "minute", "day", "week", "month", "year"), "ratio": ("ratio", "times as", "twice"),
    "average": ("average", "mean"), "geometry": ("area", "perimeter", "length", "width", "feet", "meters"),
    "units": ("convert", "unit", "inches", "pounds", "ounces"), "remainder": ("left", "remain", "rest"),
}  # fmt: skip


class ProposalStage(Stage[tuple[Scenario, str], str]):
    """Rows are (failed scenario, the student's answer text): one proposal request each; the
    parse is the candidate strategy (:func:`parse_strategy`; "" when the teacher wrote nothing).

    Round 1 decodes greedily; later rounds sample (temperature 0.7, seeded by the round), so a
    scenario the student still fails gets a fresh proposal instead of the cached one."""

    kind = "strategies-propose"
    name = "proposals"

    def __init__(self, round_: int = 1):
        self.round = round_

    def requests(self, rows: Sequence[tuple[Scenario, str]]) -> list[Request]:
        template = get_template(PROPOSE_TEMPLATE)
        params = {} if self.round <= 1 else {"temperature": 0.7, "seed": self.round, "sample_index": self.round - 1}
        return [
            template.request(f"{s.id}#propose", {"question": s.question, "student_answer": _short(answer),
                                                 "solution": s.solution or f"#### {s.answer}"}, **params)  # fmt: skip
            for s, answer in rows
        ]

    def parse(self, row: tuple[Scenario, str], response: Response) -> str:
        return parse_strategy(response.completions[0].text) if response.completions else ""


def _short(text: str, limit: int = 300) -> str:
    text = " ".join((text or "(no answer)").split())
    return text if len(text) <= limit else "..." + text[-limit:]


def parse_strategy(text: str, lead: str = LEAD) -> str:
    """The candidate strategy: ``lead`` + the first line of the teacher's continuation ("" when empty)."""
    first = next((line for line in (text or "").splitlines() if line.strip()), "")
    body = _PREFIX.sub("", first, count=1).strip().strip('"').strip() if not lead else first.strip()
    if not body:
        return ""
    return (f"{lead} {body}" if lead else body)[:MAX_CHARS]


def candidate_id(learn_id: str, round_: int, scenario_id: str, text: str) -> str:
    payload = "\x1f".join((learn_id, str(round_), scenario_id, " ".join(text.lower().split())))
    return "s" + hashlib.sha256(payload.encode()).hexdigest()[:15]


def infer_tags(question: str, strategy: str) -> list[str]:
    haystack = f" {question} {strategy} ".lower()
    return [topic for topic, words in TOPICS.items() if any(w in haystack for w in words)][:4]
