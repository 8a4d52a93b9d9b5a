"""The 23 ATOMIC2020 relations: groups, natural-language phrases, applicability classes.

Phrases follow the COMET-ATOMIC2020 natural-language forms, so a triple reads as a sentence:
``PersonX goes jogging`` + ``xNeed`` -> "PersonX goes jogging. Before that, PersonX needed
to buy running shoes".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from symkd.errors import UserError
from symkd.graphs.relations import RelationInfo, RelationSchema
from symkd.graphs.triples import NONE_TAIL

Group = Literal["social", "event", "physical"]
HeadKind = Literal["event", "entity"]


@dataclass(frozen=True)
class Relation:
    name: str
    group: Group
    #: the phrase that joins head and tail in a sentence (COMET-ATOMIC2020 style)
    phrase: str
    #: the question a template asks about the head
    question: str
    #: the kind of head the relation takes in ATOMIC2020
    head: HeadKind
    #: True when the relation is about other people (oEffect, oReact, oWant)
    others: bool = False


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in [
        # social-interaction relations (heads are PersonX events)
        Relation("xNeed", "social", "but before, PersonX needed", "What did PersonX need to do before this?", "event"),
        Relation("xIntent", "social", "because PersonX wanted", "Why did PersonX do this?", "event"),
        Relation("xWant", "social", "as a result, PersonX wants", "What does PersonX want to do after this?", "event"),
        Relation("xEffect", "social", "as a result, PersonX will", "What happens to PersonX as a result?", "event"),
        Relation("xReact", "social", "as a result, PersonX feels", "How does PersonX feel after this?", "event"),
        Relation("xAttr", "social", "PersonX is seen as", "How would you describe PersonX?", "event"),
        Relation("oWant", "social", "as a result, others want", "What do others want to do after this?", "event", True),
        Relation("oEffect", "social", "as a result, others will", "What happens to others as a result?", "event", True),
        Relation("oReact", "social", "as a result, others feel", "How do others feel after this?", "event", True),
        Relation("xReason", "social", "because", "What is the reason for this?", "event"),
        # event-centred relations
        Relation("isAfter", "event", "happens after", "What happens before this event?", "event"),
        Relation("isBefore", "event", "happens before", "What happens after this event?", "event"),
        Relation("HasSubEvent", "event", "includes the event", "What smaller event is part of this?", "event"),
        Relation("HinderedBy", "event", "can be hindered by", "What could stop this from happening?", "event"),
        Relation("Causes", "event", "causes", "What does this event cause?", "event"),
        Relation("isFilledBy", "event", "blank can be filled by", "What could fill the blank (___)?", "event"),
        # physical-entity relations (heads are objects)
        Relation("ObjectUse", "physical", "is used for", "What is this object used for?", "entity"),
        Relation("AtLocation", "physical", "is located or found at", "Where is this found?", "entity"),
        Relation("MadeUpOf", "physical", "is made up of", "What is this made of?", "entity"),
        Relation("HasProperty", "physical", "can be characterized by being", "What property does this have?", "entity"),
        Relation("CapableOf", "physical", "is capable of", "What can this do?", "entity"),
        Relation("Desires", "physical", "desires", "What does this want?", "entity"),
        Relation("NotDesires", "physical", "does not desire", "What does this not want?", "entity"),
    ]
}

SOCIAL = [r for r, v in RELATIONS.items() if v.group == "social"]
EVENT = [r for r, v in RELATIONS.items() if v.group == "event"]
PHYSICAL = [r for r, v in RELATIONS.items() if v.group == "physical"]
__all__ = ["NONE_TAIL", "RELATIONS", "SCHEMA", "Relation", "get_relation", "head_kind", "parse_relations", "sentence"]


def get_relation(name: str) -> Relation:
    """The relation called ``name`` (case-sensitive, as in ATOMIC2020); a clear error otherwise."""
    try:
        return RELATIONS[name]
    except KeyError:
        close = [r for r in RELATIONS if r.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(RELATIONS)}"
        raise UserError(f"unknown relation {name!r}{hint}") from None


def parse_relations(spec: str | list[str] | None) -> list[str]:
    """``None``/``"all"`` -> all 23; a group name (social|event|physical) or a comma list."""
    if spec is None or spec == "all":
        return list(RELATIONS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    groups = {"social": SOCIAL, "event": EVENT, "physical": PHYSICAL}
    for name in (n.strip() for n in names):
        if not name:
            continue
        for rel in groups.get(name, [name]):
            get_relation(rel)
            if rel not in out:
                out.append(rel)
    if not out:
        raise UserError("no relations selected")
    return out


def head_kind(head: str) -> HeadKind:
    """ATOMIC2020 heads mentioning PersonX are events; others (``chain``, ``bike``) are entities."""
    return "event" if "PersonX" in head or "personx" in head.lower() else "entity"


def sentence(head: str, relation: str, tail: str) -> str:
    """Natural-language form of a triple (used by critics and students)."""
    return f"{head.rstrip('.')}. {RELATIONS[relation].phrase} {tail}".strip()


def statement(schema: RelationSchema, head: str, relation: str, tail: str) -> str:
    """A triple as one readable sentence for a judge (social phrases start a new sentence)."""
    rel = RELATIONS.get(relation)
    if rel is None:
        return f"{head} {relation} {tail}."
    if relation == "isFilledBy" and "___" in head:
        return head.replace("___", tail, 1) + "."
    if rel.group == "social":
        phrase = rel.phrase[0].upper() + rel.phrase[1:]
        return f"{head}. {phrase} {tail}."
    return f"{head} {rel.phrase} {tail}."


#: the ATOMIC2020 relations as the core sees them (entry point ``symkd.relations: atomic2020``)
SCHEMA = RelationSchema(
    "atomic2020",
    [RelationInfo(r.name, r.group, r.phrase, {"question": r.question, "head": r.head, "others": r.others})
     for r in RELATIONS.values()],
    none_tail=NONE_TAIL,
    head_kind=head_kind,
    statement_fn=statement,
)
