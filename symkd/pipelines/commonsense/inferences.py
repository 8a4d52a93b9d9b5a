"""Stage 3: tails for (head, relation) pairs, and the entity heads of the physical relations.

One versioned template per relation (``prompts/commonsense/relations/<relation>.yaml``): a
relation-specific question, 5 worked examples, then the open stem ("Before this, Riley
needed"). People appear by sampled first names, mapped back to PersonX/PersonY/PersonZ in the
output. Each request asks for several samples; a tail is cleaned, its first letter
lower-cased (unless it names a person); fragments of 2 characters or fewer and tails naming
a person the head does not have (copied from the examples) are dropped, and tails are
deduplicated per (head, relation).

Entity heads: ATOMIC2020's physical relations take objects ("chain"), not PersonX events.
They come from the seed file's lines without PersonX, then from nouns the kept events
mention after a determiner or possessive ("PersonX decorates his house" -> "house"; the seed
events' nouns when the kept ones have too few); see :func:`extract_entities`. A rule, not the
teacher: cheap, deterministic and testable. Whether each physical relation applies to them
is asked (see :mod:`symkd.pipelines.commonsense.applicability`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

from symkd.teachers.constraints import satisfies
from symkd.graphs.triples import add_triples, normalize
from symkd.pipelines.commonsense.names import (
    derive_seed,
    name_examples,
    rng_for,
    sample_names,
    stray_names,
    to_names,
    to_placeholders,
)
from symkd.pipelines.commonsense.relations import NONE_TAIL
from symkd.pipelines.commonsense.seeds import clean
from symkd.prompts import PromptTemplate, get_template
from symkd.store.db import Store
from symkd.stages import Stage, run_stage
from symkd.teachers.messages import Request, Response

if TYPE_CHECKING:
    from symkd.session import TeacherSession

MIN_TAIL_CHARS = 3
_PERSON = re.compile(r"^Person[XYZ]\b")
_DETERMINERS = {"a", "an", "the", "his", "her", "their", "my", "your", "our", "its", "some", "this", "that", "another"}
#: words that end a noun phrase or are never a physical thing
_STOP = {
    "and", "or", "but", "to", "of", "in", "on", "at", "for", "with", "from", "by", "about", "into", "over",
    "after", "before", "as", "than", "when", "while", "because", "so", "if", "up", "out", "off", "down",
    "lot", "bit", "way", "time", "day", "night", "week", "year", "thing", "things", "something", "one",
    "person", "people", "friend", "friends", "family", "mind", "life", "chance", "turn", "best", "first",
    "last", "other", "same", "whole", "own", "new", "old", "good", "bad", "big", "little", "next", "few",
    "second", "third", "point", "side", "part", "place", "sense", "idea", "ordinary", "morning", "evening",
    "slack", "raise", "voice", "ambitions", "opinion", "name", "mistake", "problem", "question", "answer",
    "only", "very", "most", "love", "world", "kind", "end", "rest", "top", "fact", "truth", "talent", "fun",
}  # fmt: skip
_ABSTRACT = re.compile(r"(?:tion|sion|ness|ment|ity|ship|ism|ance|ence|ledge)$")


def template_for(relation: str) -> PromptTemplate:
    return get_template(f"commonsense/relations/{relation.lower()}")


class TailStage(Stage[tuple[str, str], list[tuple[str | None, str | None]]]):
    """Rows are (head, relation): one request for ``samples`` tails each; the parse is one
    :func:`parse_tail` result per completion, with the head's names mapped back."""

    kind = "commonsense-inferences"
    name = "inferences"

    def __init__(self, *, seed: int, samples: int):
        self.seed, self.samples = seed, samples
        self._templates: dict[str, PromptTemplate] = {}

    def names(self, head: str) -> dict[str, str]:
        """The first names the head's request uses (PersonX -> "Riley", ...)."""
        return sample_names(rng_for(self.seed, "names", head))

    def request(self, head: str, relation: str) -> Request:
        if relation not in self._templates:
            self._templates[relation] = template_for(relation)
        template = self._templates[relation]
        names = self.names(head)
        shots = name_examples(template.examples, rng_for(self.seed, "shot-names", relation))
        variables = {"shots": shots, "head": to_names(head, names), "x": names["PersonX"]}
        seed_value = derive_seed(self.seed, "tails", head, relation)
        return template.request(f"tails:{relation}:{head}", variables, n=self.samples, seed=seed_value)

    def requests(self, rows: Sequence[tuple[str, str]]) -> list[Request]:
        return [self.request(head, relation) for head, relation in rows]

    def parse(self, row: tuple[str, str], response: Response) -> list[tuple[str | None, str | None]]:
        names = self.names(row[0])
        return [parse_tail(completion.text, names) for completion in response.completions]


def parse_tail(text: str, names: dict[str, str]) -> tuple[str | None, str | None]:
    """(clean tail in PersonX form, None) or (None, why it is dropped).

    Dropped: "fragment" (2 characters or fewer, or "none": applicability decides that) and
    "stray-name" (a first name the head does not have, copied from the examples).
    """
    text = clean(text.split("\n")[0])
    text = to_placeholders(text, names).strip(" .,;:!?\"'()[]")
    if len(text) < MIN_TAIL_CHARS or normalize(text) == NONE_TAIL:
        return None, "fragment"
    if stray_names(text):
        return None, "stray-name"
    if not _PERSON.match(text):
        text = text[0].lower() + text[1:]
    return text, None


def extract_entities(events: Iterable[str], limit: int) -> list[str]:
    """Up to ``limit`` nouns the events mention after a determiner, most frequent first.

    "PersonX goes to a pawn shop" -> "pawn shop": up to two lower-case words after a
    determiner or possessive, cut at a function word; abstract nouns (-tion, -ness, -ity, ...)
    and vague ones ("time", "friend") are skipped.
    """
    found: Counter[str] = Counter()
    order: dict[str, int] = {}
    for event in events:
        words = re.findall(r"[A-Za-z][A-Za-z'\-]*", event)
        for i, word in enumerate(words[:-1]):
            if word.lower() not in _DETERMINERS and not re.fullmatch(r"Person[XYZ]'s", word):
                continue
            phrase: list[str] = []
            for nxt in words[i + 1 : i + 3]:
                if not nxt.islower() or nxt in _STOP or nxt in _DETERMINERS or "'" in nxt:
                    break
                phrase.append(nxt)
            if phrase and not _ABSTRACT.search(phrase[-1]) and len(phrase[-1]) > 2:
                entity = " ".join(phrase)
                found[entity] += 1
                order.setdefault(entity, len(order))
    ranked = sorted(found, key=lambda e: (-found[e], order[e]))
    return ranked[:limit]


@dataclass
class InferenceResult:
    counts: dict
    per_relation: dict[str, dict[str, int]]
    summary: dict | None = None
    triples: list[dict] = field(default_factory=list)


def generate_tails(
    session: "TeacherSession",
    store: Store,
    pairs: Sequence[tuple[str, str]],
    *,
    seed: int,
    samples: int,
    require: Sequence[str] = (),
    forbid: Sequence[str] = (),
    config: dict | None = None,
) -> InferenceResult:
    """Ask for ``samples`` tails per (head, relation), parse, filter, dedupe and store them."""
    per_relation = {r: {"tails": 0, "none": 0} for r in dict.fromkeys(rel for _, rel in pairs)}
    counts = {"requests": len(pairs), "samples": 0, "failed": 0, "tails": 0, "new_rows": 0,
              "dropped_fragment": 0, "dropped_stray-name": 0, "dropped_constraint": 0, "dropped_duplicate": 0}  # fmt: skip
    if not pairs:
        return InferenceResult(counts, per_relation)
    answers = run_stage(session, TailStage(seed=seed, samples=samples), pairs, config=config)
    rows: list[dict] = []
    for answer in answers:
        if not answer.answered:
            counts["failed"] += 1
            continue
        (head, relation), request, seen = answer.row, answer.request, set()
        for index, (completion, (tail, reason)) in enumerate(zip(answer.response.completions, answer.parsed)):
            counts["samples"] += 1
            if tail is not None and not satisfies(tail, require, forbid):
                reason = "constraint"
            if reason is None and normalize(tail) in seen:
                reason = "duplicate"
            if reason:
                counts[f"dropped_{reason}"] += 1
                continue
            seen.add(normalize(tail))
            rows.append(
                {
                    "head": head,
                    "relation": relation,
                    "tail": tail,
                    "source": "teacher",
                    "run_id": answers.result.run_id,
                    "response_key": answer.key,
                    "template_id": request.template_id,
                    "template_version": request.template_version,
                    "sample": index,
                    "logprob_sum": completion.logprob_sum,
                }
            )
            per_relation[relation]["tails"] += 1
    counts["tails"] = len(rows)
    counts["new_rows"] = add_triples(store, rows)
    return InferenceResult(counts, per_relation, answers.result.as_dict(), rows)


def store_none_rows(store: Store, nones: dict[tuple[str, str], dict]) -> int:
    """Store a tail "none" row (source "applicability") per pair; returns how many were new."""
    rows = []
    for (head, relation), origin in nones.items():
        get = origin.get
        rows.append(
            {
                "head": head,
                "relation": relation,
                "tail": NONE_TAIL,
                "source": "applicability",
                "run_id": get("run_id"),
                "response_key": get("response_key"),
                "template_id": get("template_id"),
                "template_version": get("template_version"),
            }
        )
    return add_triples(store, rows)

