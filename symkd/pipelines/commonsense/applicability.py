"""Does a relation apply to a head? By rule where it is certain, else by asking the teacher.

ATOMIC2020 answers "none" when a relation does not apply (oReact of "PersonX builds muscle").
The rules, checked in order (see :func:`rule`):

1. out of scope — physical relations take entity heads ("chain"), social and event relations
   take PersonX events; such pairs are never asked and never stored (ATOMIC2020 has none).
2. isFilledBy applies exactly when the event has a blank ("___"); otherwise "none".
3. oWant/oEffect/oReact apply when the event names another person (PersonY, PersonZ).
4. Relations in :data:`ASK` are asked: the o-relations without another person, xNeed,
   xIntent (in ATOMIC2020 dev these are the only relations with "none" references on
   events), and ObjectUse/MadeUpOf/CapableOf/Desires/NotDesires on entities (a sunset has no
   use; a spoon desires nothing).
5. Everything else applies (no "none" reference for it in ATOMIC2020 dev).

The teacher answers a yes/no question per (head, question key); relations sharing a key share
the call. Each question is phrased so that "no" is ATOMIC2020's more common outcome
(:data:`NONE_WHEN` says which answer means "does not apply"). A "does not apply" becomes a
tail "none" row with source "applicability"; an answer that is neither yes nor no counts as
"unclear" and the relation is treated as applying (critics see its tails).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from symkd.pipelines.commonsense.names import name_examples, people, rng_for, sample_names, to_names
from symkd.pipelines.commonsense.relations import RELATIONS, head_kind
from symkd.prompts import PromptTemplate, get_template
from symkd.stages import Stage, run_stage
from symkd.teachers.messages import Request, Response

if TYPE_CHECKING:
    from symkd.session import TeacherSession

TEMPLATE = "commonsense/applicability"
#: relation -> question key of the applicability template (relations sharing a key share a call)
ASK: dict[str, str] = {
    "oWant": "others", "oEffect": "others", "oReact": "others",
    "xNeed": "need", "xIntent": "intent",
    "ObjectUse": "use", "MadeUpOf": "material", "CapableOf": "agent",
    "Desires": "alive", "NotDesires": "alive",
}  # fmt: skip
#: question key -> the answer that means "does not apply" (each question is phrased so that
#: "no" is the outcome ATOMIC2020 gives more often: a teacher that cannot tell follows the prior)
NONE_WHEN: dict[str, bool] = {
    "others": False, "agent": False, "alive": False,  # "Does anyone else take part?" no -> none
    "need": True, "intent": True, "use": True, "material": True,  # "By accident?" yes -> none
}  # fmt: skip

Verdict = Literal["applies", "none", "out-of-scope", "ask"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str


def rule(head: str, relation: str) -> Decision:
    """The rule decision for (head, relation); verdict "ask" when no rule is certain."""
    rel = RELATIONS[relation]
    kind = head_kind(head)
    if rel.head != kind:
        return Decision("out-of-scope", f"{rel.group} relations take {rel.head} heads")
    if relation == "isFilledBy":
        return Decision("applies", "blank") if "___" in head else Decision("none", "no-blank")
    if rel.others and people(head) - {"PersonX"}:
        return Decision("applies", "other-person")
    if relation in ASK:
        return Decision("ask", ASK[relation])
    return Decision("applies", "always")


def parse_answer(text: str) -> bool | None:
    """"yes" -> True, "no" -> False, anything else -> None."""
    words = text.strip().lower().replace(".", " ").replace(",", " ").split()
    first = words[0] if words else ""
    return True if first == "yes" else False if first == "no" else None


class QuestionStage(Stage[tuple[str, str], bool]):
    """Rows are (head, question key): one yes/no request each (same head+key -> same cache key);
    the parse is :func:`parse_answer` of the first completion (None: unclear)."""

    kind = "commonsense-applicability"
    name = "applicability"

    def __init__(self, seed: int, template: PromptTemplate | None = None):
        self.seed, self.template = seed, template or get_template(TEMPLATE)

    def request(self, head: str, key: str) -> Request:
        template = self.template
        names = sample_names(rng_for(self.seed, "names", head))
        examples = [e for e in template.examples if e["key"] == key]
        if not examples:
            raise ValueError(f"template {template.ref} has no examples for question {key!r}")
        shots = name_examples(examples, rng_for(self.seed, "shot-names", key))
        variables = {
            "shots": shots,
            "head": to_names(head, names),
            "key": key,
            "x": names["PersonX"],
            "label": "Event" if head_kind(head) == "event" else "Thing",
        }
        item = f"app:{key}:{head}"
        return template.request(item, variables, seed=self.seed)

    def requests(self, rows: Sequence[tuple[str, str]]) -> list[Request]:
        return [self.request(head, key) for head, key in rows]

    def parse(self, row: tuple[str, str], response: Response) -> bool | None:
        return parse_answer(response.completions[0].text) if response.completions else None


@dataclass
class Applicability:
    """Decisions for every (head, relation) pair of a run, and where they came from."""

    #: (head, relation) -> "applies" | "none" (out-of-scope pairs are left out)
    verdicts: dict[tuple[str, str], str]
    #: (head, relation) -> provenance of a "none" verdict (run_id, response_key, template)
    provenance: dict[tuple[str, str], dict]
    counts: dict[str, int]
    summary: dict | None


def decide(session: "TeacherSession", heads: list[str], relations: list[str], seed: int, config: dict) -> Applicability:
    """Apply the rules; ask the teacher the rest (one call per distinct head and question)."""
    keys = ("rule_applies", "rule_none", "out_of_scope", "calls", "asked", "applies", "none", "unclear", "failed")
    counts = {k: 0 for k in keys}
    verdicts: dict[tuple[str, str], str] = {}
    provenance: dict[tuple[str, str], dict] = {}
    pending: dict[tuple[str, str], list[str]] = {}
    for head in heads:
        for relation in relations:
            decision = rule(head, relation)
            if decision.verdict == "out-of-scope":
                counts["out_of_scope"] += 1
            elif decision.verdict == "ask":
                pending.setdefault((head, decision.reason), []).append(relation)
            else:
                verdicts[(head, relation)] = decision.verdict
                counts["rule_applies" if decision.verdict == "applies" else "rule_none"] += 1
                if decision.verdict == "none":
                    provenance[(head, relation)] = {"rule": decision.reason}
    if not pending:
        return Applicability(verdicts, provenance, counts, None)
    stage = QuestionStage(seed)
    ordered = sorted(pending, key=lambda pair: list(NONE_WHEN).index(pair[1]))  # same question together
    answers = run_stage(session, stage, ordered, config=config)
    counts["calls"] = len(ordered)
    for reply in answers:
        if not reply.answered or not reply.response.completions:
            counts["failed"] += len(pending[reply.row])  # decided by the next run
            continue
        answer, key = reply.parsed, reply.row[1]
        applies = answer is None or answer != NONE_WHEN[key]
        for relation in pending[reply.row]:
            counts["asked"] += 1
            counts["unclear" if answer is None else "applies" if applies else "none"] += 1
            verdicts[(reply.row[0], relation)] = "applies" if applies else "none"
            if not applies:
                provenance[(reply.row[0], relation)] = {
                    "run_id": answers.result.run_id,
                    "response_key": reply.key,
                    "template_id": stage.template.id,
                    "template_version": stage.template.version,
                }
    return Applicability(verdicts, provenance, counts, answers.result.as_dict())
