"""The student model as a :class:`~.acceptance.Scorer`: plain chain-of-thought, graded numerically.

Every attempt is a request from the ``strategies/student`` template (greedy decoding) sent
through a :class:`~symkd.session.TeacherSession`, so it is cached: a rerun, and any two
trials with the same question and guidance, cost one generation.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from symkd.pipelines.agents import answers_match, extract_answer
from symkd.pipelines.strategies.acceptance import Attempt, Scorer, Trial
from symkd.prompts import get_template
from symkd.session import TeacherSession
from symkd.teachers.messages import Request

STUDENT_TEMPLATE = "strategies/student"


def trial_id(trial: Trial) -> str:
    digest = hashlib.sha256("\x1f".join(trial.guidance).encode()).hexdigest()[:10]
    return f"{trial.scenario.id}|{digest}"


class StudentScorer(Scorer):
    def __init__(self, session: TeacherSession, *, max_tokens: int | None = None, template: str = STUDENT_TEMPLATE):
        self.session = session
        self.template = get_template(template)
        self.max_tokens = max_tokens

    def describe(self) -> dict[str, Any]:
        spec = self.session.spec if isinstance(self.session.spec, str) else type(self.session.spec).__name__
        return {"scorer": "student", "student": spec, "template": self.template.ref, "max_tokens": self.max_tokens}

    def requests(self, trials: Sequence[Trial]) -> list[Request]:
        out, seen = [], set()
        for trial in trials:
            rid = trial_id(trial)
            if rid in seen:
                continue
            seen.add(rid)
            variables = {"question": trial.scenario.question, "strategies": list(trial.guidance)}
            out.append(self.template.request(rid, variables, max_tokens=self.max_tokens))
        return out

    def attempt(self, trials: Sequence[Trial], *, stage: str) -> list[Attempt]:
        if not trials:
            return []
        result = self.session.ask(self.requests(trials), kind="strategies-student",
                                  config={"template": self.template.ref}, stage=stage)  # fmt: skip
        texts = {item: (resp.completions[0].text if resp is not None and resp.ok and resp.completions else None)
                 for item, _, resp in result}  # fmt: skip
        return [_grade(trial, texts.get(trial_id(trial))) for trial in trials]


def _grade(trial: Trial, text: str | None) -> Attempt:
    if text is None:  # failed request: counted wrong, retried by the next run
        return Attempt(False, "", None)
    answer = extract_answer(text)
    return Attempt(answers_match(answer, trial.scenario.answer), text, answer)
