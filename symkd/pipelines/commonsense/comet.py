"""The commonsense pipeline's training data: COMET-style prompts for (head, relation) pairs.

Commonsense triples become :class:`~symkd.students.data.Example` s in the format of
:func:`comet_prompt`::

    "PersonX goes jogging as a result, PersonX feels [GEN]"  ->  " tired<eos>"

(the relation's natural-language phrase from :mod:`symkd.pipelines.commonsense.relations`, so the
format reads as a sentence for a pretrained LM and needs no new tokens). Sources, registered as
data formats in the ``symkd.data`` entry-point group (``symkd train --data``):

* ``db``: a run DB's curated triples, optionally only those every named critic kept (or scored
  at least ``min_score``), of some rounds or relations, capped at ``limit`` (seeded sample);
* ``tsv``: an ATOMIC TSV (``head @@ relation<TAB>tail1| tail2``): one example per tail;
* ``triples``: JSONL rows ``{head, relation, tail}``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.graphs.triples import curated_triples, normalize
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.students.data import DataFormat, Example, TrainingData

GEN = "[GEN]"


def comet_prompt(head: str, relation: str) -> str:
    """The prompt a student sees for (head, relation); the tail follows after one space."""
    if relation not in RELATIONS:
        raise UserError(f"unknown relation {relation!r}")
    return f"{head.strip()} {RELATIONS[relation].phrase} {GEN}"


def triple_example(head: str, relation: str, tail: str) -> Example:
    return Example(comet_prompt(head, relation), " " + tail.strip(), group=normalize(head))


def from_triples(rows: Sequence[Any], source: dict[str, Any] | None = None) -> TrainingData:
    """Examples from ``(head, relation, tail)`` tuples or mappings with those keys."""
    examples = []
    for row in rows:
        head, relation, tail = (row["head"], row["relation"], row["tail"]) if isinstance(row, dict) else row
        examples.append(triple_example(head, relation, tail))
    return TrainingData(examples, source or {"kind": "triples", "rows": len(examples)})


def from_db(
    db: str | Path,
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    rounds: Sequence[int] = (),
    relations: Sequence[str] = (),
    limit: int | None = None,
    seed: int = 0,
) -> TrainingData:
    """Curated triples of a run DB (see :func:`symkd.graphs.triples.curated_triples`)."""
    from symkd.store.db import Store

    path = Path(db)
    if not path.is_file():
        raise UserError(f"{path}: no such database")
    with Store(path, create=False, readonly=True) as store:
        if not store.scalar("select count(*) from sqlite_master where name = 'triples'"):
            raise UserError(f"{path}: no triples table (run symkd commonsense distill first)")
        known = {r["critic"] for r in store.query("select distinct critic from critic_scores")}
        missing = [c for c in critics if c not in known]
        if missing:
            have = ", ".join(sorted(known)) or "none"
            raise UserError(f"{path}: critic {missing[0]!r} has scored nothing here (critics in this DB: {have})")
        rows = curated_triples(store, critics=critics, min_score=min_score, rounds=rounds, relations=relations)
    available = len(rows)
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    data = from_triples(rows)
    data.source = {"kind": "db", "path": str(path), "critics": list(critics), "min_score": min_score,
                   "rounds": list(rounds), "relations": list(relations), "available": available,
                   "limit": limit, "sample_seed": seed if limit is not None else None, "rows": len(rows)}  # fmt: skip
    return data


def from_tsv(path: str | Path, **_: Any) -> TrainingData:
    """One example per reference tail of an ATOMIC TSV file."""
    from symkd.pipelines.commonsense.atomic import read_atomic_tsv

    lines = read_atomic_tsv(path)
    examples = [triple_example(ln.head, ln.relation, tail) for ln in lines for tail in ln.tails]
    return TrainingData(examples, {"kind": "tsv", "path": str(path), "lines": len(lines), "rows": len(examples)})


def triple_row(obj: dict[str, Any], where: str) -> Example:
    """A JSONL row ``{head, relation, tail}`` -> its example; one UserError naming ``where`` and the field."""
    fields = [obj[k] for k in ("head", "relation", "tail")]
    if not all(isinstance(v, str) and v.strip() for v in fields):
        raise UserError(f"{where}: 'head', 'relation' and 'tail' must be non-empty strings")
    try:
        return triple_example(*fields)
    except UserError as exc:
        raise UserError(f"{where}: field 'relation': {exc}") from None


#: the data formats this pipeline adds (entry points ``symkd.data``: db, tsv, triples)
DB_DATA = DataFormat("db", "a run DB (.db)", (".db", ".sqlite", ".sqlite3"), from_db, options=True)
TSV_DATA = DataFormat("tsv", "an ATOMIC .tsv", (".tsv",), from_tsv)
TRIPLE_ROWS = DataFormat("triples", "JSONL rows {head, relation, tail}", keys=("head", "relation", "tail"), row=triple_row)
