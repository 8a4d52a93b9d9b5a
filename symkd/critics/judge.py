"""LLM-judge critic: a teacher rates each triple's plausibility from 1 to 5.

One request per triple from a template (default ``prompts/critics/judge.yaml``, variables
``head``, ``relation``, ``tail``, ``statement``), sent through :func:`symkd.generation.generate`,
so answers are cached in the store and a killed pass resumes without asking again.
The first rating 1-5 in the answer is taken (:func:`parse_rating`); score = rating / 5 and
the triple is kept when rating >= ``threshold`` (in rating units, default 3).

An answer with no rating is recorded with score NULL (NaN) and details holding the raw
answer; it is kept by default (the judge abstained; ``on_unparsed="drop"`` drops it).
A request that finally fails raises :class:`UserError` (rerunning retries it; finished
answers come from the cache). The critic needs a store for its cache: the one it is bound
to (:meth:`LLMJudgeCritic.bind`) or the ``cache_db`` option.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

from symkd.critics.base import Critic, Verdict
from symkd.errors import UserError
from symkd.graphs.relations import RelationSchema, get_schema
from symkd.graphs.triples import TRIPLE_TABLE, is_none
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.options import as_options

#: a batch this large where every rating is the same gets a warning
DEGENERATE_MIN = 20
VARIABLES = ("head", "relation", "tail", "statement")
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
#: mentions of the scale itself ("1-5", "1 to 5", "out of 5", "/5") are not ratings
_SCALE = re.compile(r"(?i)\b1\s*(?:-|\u2013|to)\s*5\b|(?:/\s*5|\bout\s+of\s+(?:5|five))\b")
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?:\.(\d+))?(?!\d)")
#: a number word counts only first in the answer or right after "rating"/"score"
_WORD = re.compile(r"(?i)(?:^\W*|\b(?:rating|score)\W*(?:is\W+|of\W+)?)(one|two|three|four|five)\b")


def parse_rating(text: str | None) -> float | None:
    """The first rating 1-5 in ``text`` ("4", "Rating: 4/5", "**3**", "Four."); None if none."""
    if not text:
        return None
    cleaned = _SCALE.sub(" ", text)
    match = _DIGIT.search(cleaned)
    if match is not None:
        value = float(f"{match.group(1)}.{match.group(2) or 0}")
        return value if value <= 5.0 else None
    word = _WORD.search(cleaned)
    return float(_WORDS[word.group(1).lower()]) if word else None


def statement(head: str, relation: str, tail: str, schema: str | RelationSchema | None = None) -> str:
    """A triple as one readable sentence for the judge, as the relation schema words it."""
    return get_schema(schema).statement(head, relation, tail)


class LLMJudgeCritic(Critic):
    """A teacher rates plausibility 1-5 (see the module doc)."""

    name = "judge"
    version = "1"
    item_table = TRIPLE_TABLE
    batch_size = 256
    #: the relation schema that words each triple (a ``symkd.relations`` name or a schema; None: the
    #: default one); an item's own ``statement`` wins
    relations: str | RelationSchema | None = None

    def __init__(
        self,
        teacher: str | Teacher = "smollm2",
        threshold: float = 3,
        template: str = "critics/judge",
        cache_db: str | Path | Store | None = None,
        on_unparsed: str = "keep",
        base_url: str | None = None,
        api_key_env: str | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        rpm: float | None = None,
    ):
        from symkd.prompts import get_template

        if not 1 <= float(threshold) <= 5:
            raise UserError(f"critic 'judge': threshold {threshold} is a rating and must be in 1..5")
        if on_unparsed not in {"keep", "drop"}:
            raise UserError(f"critic 'judge': on_unparsed must be keep or drop, not {on_unparsed!r}")
        self.teacher = teacher
        self.template = get_template(template)
        unknown = sorted(set(self.template.variables) - set(VARIABLES))
        if unknown or not self.template.variables:
            raise UserError(
                f"{self.template.source or self.template.ref}: field variables: the judge fills only "
                f"{', '.join(VARIABLES)}" + (f", not {unknown[0]!r}" if unknown else "")
            )
        self.min_rating = float(threshold)
        #: recorded next to the scores, so in score units (rating / 5)
        self.threshold = self.min_rating / 5
        self.on_unparsed = on_unparsed
        self.teacher_options = as_options({"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency,
                                           "timeout": timeout, "max_retries": max_retries, "rpm": rpm})  # fmt: skip
        self._store = cache_db
        self._answers: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        teacher = self.teacher if isinstance(self.teacher, str) else f"{self.teacher.backend}:{self.teacher.model_id}"
        return {
            **super().describe(),
            "teacher": teacher,
            "template": self.template.ref,
            "min_rating": self.min_rating,
            "on_unparsed": self.on_unparsed,
        }

    def bind(self, store: Store, *, rescore: bool = False) -> None:
        """Cache the judge's requests and answers in ``store`` (unless ``cache_db`` was given)."""
        if self._store is None:
            self._store = store

    def requests(self, items: Sequence[dict[str, Any]]) -> list:
        """One request per item, its id the item's id."""
        out, schema = [], get_schema(self.relations)
        for item in items:
            head, relation, tail = item.get("head") or "", item.get("relation") or "", item.get("tail") or ""
            said = item.get("statement") or schema.statement(head, relation, tail)
            variables = {"head": head, "relation": relation, "tail": tail, "statement": said}
            out.append(self.template.request(item["id"], {k: variables[k] for k in self.template.variables}))
        return out

    def reset(self) -> None:
        self._answers = {}

    def prepare(self, items: Sequence[dict[str, Any]]) -> None:
        """Ask the teacher about every item at once: one session (a local teacher loads once),
        one cached run; a rerun after a kill is answered from the cache."""
        from symkd.session import TeacherSession

        if self._store is None:
            raise UserError("critic 'judge' needs a store for its cache: pass cache_db=... or bind(store)")
        todo = [i for i in items if not is_none(i.get("tail") or "") and i["id"] not in self._answers]
        if not todo:
            return
        config = {"critic": self.name, "version": self.version, "template": self.template.ref}
        with TeacherSession(self.teacher, self._store, self.teacher_options, progress=False) as session:
            result = session.ask(self.requests(todo), kind="critic-judge", config=config, stage="judge")
        answers = result.responses()
        failed = [r for r in answers.values() if not r.ok]
        if failed or len(answers) < len(todo):
            first = failed[0].error if failed else "no answer stored"
            raise UserError(
                f"critic 'judge': {len(failed) or len(todo) - len(answers)} of {len(todo)} requests failed "
                f"(first: {first}); rerun to retry, answers so far are cached"
            )
        self._answers.update(answers)

    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        self.prepare(items)  # a no-op for items prepared already
        verdicts = [self._verdict(item, self._answers.get(item["id"])) for item in items]
        ratings = {v.details["rating"] for v in verdicts if v.details.get("rating") is not None}
        rated = sum(v.details.get("rating") is not None for v in verdicts)
        if rated >= DEGENERATE_MIN and len(ratings) == 1:
            warnings.warn(
                f"critic 'judge': the teacher rated all {rated} triples of this batch {ratings.pop():g}; "
                "it may be too small to judge (try a larger teacher)",
                stacklevel=2,
            )
        return verdicts

    def _verdict(self, item: dict[str, Any], answer: Any) -> Verdict:
        if answer is None:  # a "none" tail: nothing to judge
            return Verdict(math.nan, True, {"rating": None, "skipped": "none tail"})
        text = answer.completions[0].text if answer.completions else ""
        rating = parse_rating(text)
        if rating is None:
            return Verdict(math.nan, self.on_unparsed == "keep", {"rating": None, "answer": text, "unparsed": True})
        return Verdict(rating / 5, rating >= self.min_rating, {"rating": rating, "answer": text})
