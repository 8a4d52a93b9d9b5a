"""Relation schemas: the relations a store's triples use, looked up by name.

The core knows no relation of its own. A pipeline (or a user's package) describes its relations
as a :class:`RelationSchema` - names, a category per relation (the graph's ``group`` attribute and
node ``groups``), a description (the phrase that joins head and tail in a sentence) and any other
metadata - and registers it in the ``symkd.relations`` entry-point group::

    [project.entry-points."symkd.relations"]
    atomic2020 = "my_pkg.relations:SCHEMA"

Graphs, stats, the judge and the students' data take the schema by name (:func:`get_schema`);
with no name they use the default one: the only installed schema, else :data:`EMPTY` (no
relation known, every relation accepted as it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from symkd.errors import UserError
from symkd.plugins import Registry

#: name -> RelationSchema (or a ``"module:attr"`` target), from the ``symkd.relations`` entry points
SCHEMAS = Registry("symkd.relations", "relation schema")


@dataclass(frozen=True)
class RelationInfo:
    """One relation: its name, category and description, plus free-form metadata."""

    name: str
    category: str = ""
    #: the phrase that joins head and tail in a sentence ("as a result, PersonX feels")
    description: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


def _plain_statement(schema: "RelationSchema", head: str, relation: str, tail: str) -> str:
    info = schema.get(relation)
    joined = info.description if info is not None and info.description else relation
    return f"{head} {joined} {tail}."


@dataclass(frozen=True)
class RelationSchema:
    """The relations of one kind of knowledge (see the module doc)."""

    name: str
    relations: Sequence[RelationInfo] = ()
    #: the tail that says "the relation does not apply"
    none_tail: str = "none"
    #: head text -> its node type when the events table does not say (None: "event")
    head_kind: Callable[[str], str] | None = None
    #: (schema, head, relation, tail) -> one readable sentence (for judges); None: head, description, tail
    statement_fn: Callable[..., str] | None = None
    _by_name: dict[str, RelationInfo] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({r.name: r for r in self.relations})

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def categories(self) -> list[str]:
        """Categories in first-seen order (the graph's ``groups`` are listed in this order)."""
        return list(dict.fromkeys(r.category for r in self.relations if r.category))

    def get(self, name: str) -> RelationInfo | None:
        return self._by_name.get(name)

    def category(self, name: str) -> str | None:
        info = self._by_name.get(name)
        return info.category or None if info is not None else None

    def description(self, name: str) -> str | None:
        info = self._by_name.get(name)
        return info.description if info is not None else None

    def check(self, name: str) -> RelationInfo | None:
        """The relation called ``name``; a clear error when the schema lists relations and not this one."""
        if not self._by_name:
            return None
        if name in self._by_name:
            return self._by_name[name]
        close = [r for r in self._by_name if r.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(self._by_name)}"
        raise UserError(f"unknown relation {name!r}{hint}")

    def parse(self, spec: str | Sequence[str] | None) -> list[str]:
        """``None``/``"all"`` -> every relation; a category name or a comma list of names/categories."""
        if spec is None or spec == "all":
            return self.names
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        by_category = {c: [r.name for r in self.relations if r.category == c] for c in self.categories}
        out: list[str] = []
        for name in (n.strip() for n in names):
            if not name:
                continue
            for rel in by_category.get(name, [name]):
                self.check(rel)
                if rel not in out:
                    out.append(rel)
        if not out:
            raise UserError("no relations selected")
        return out

    def kind_of_head(self, head: str) -> str:
        return self.head_kind(head) if self.head_kind is not None else "event"

    def statement(self, head: str, relation: str, tail: str) -> str:
        """A triple as one readable sentence."""
        head, tail = head.strip().rstrip("."), tail.strip().rstrip(".")
        return (self.statement_fn or _plain_statement)(self, head, relation, tail)


#: the schema of a store no installed schema describes: no relation known, none refused
EMPTY = RelationSchema("none")


def get_schema(name: str | RelationSchema | None = None) -> RelationSchema:
    """The schema registered as ``name``; with None the default (the only installed one, else :data:`EMPTY`)."""
    if isinstance(name, RelationSchema):
        return name
    if name is None:
        names = SCHEMAS.names()
        if len(names) != 1:
            return EMPTY
        name = names[0]
    schema = SCHEMAS.load(name)
    if not isinstance(schema, RelationSchema):
        raise UserError(f"relation schema {name!r}: {SCHEMAS.target(name)!r} is not a RelationSchema")
    return schema


def parse_relations(spec: str | Sequence[str] | None, schema: str | RelationSchema | None = None) -> list[str]:
    """:meth:`RelationSchema.parse` of the named (or default) schema."""
    return get_schema(schema).parse(spec)
