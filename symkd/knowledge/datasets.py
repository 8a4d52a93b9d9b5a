"""Curated knowledge in the formats trainers read: Parquet, Hugging Face ``datasets``, chat JSONL.

One row per curated triple with its provenance (run, teacher, template id+version, response
key, sample, round, source) and, for every critic that scored triples, its latest version's
score, decision and version as columns ``<critic>_score``, ``<critic>_decision``,
``<critic>_version``. The selection is the graph's (:class:`symkd.graphs.Selection`), so a
Parquet export and a GraphML export of the same options hold the same triples.

    symkd export --db run.db --format parquet --out kept.parquet --critic rules,classifier
    ds = symkd.to_dataset("run.db", critics=["rules", "classifier"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from symkd.errors import UserError
from symkd.graphs.build import Selection, TripleSource
from symkd.jsonio import atomic_write, dumps
from symkd.knowledge.relations import RELATIONS
from symkd.store.db import Store

TRIPLE_COLUMNS = ("id", "head", "relation", "tail", "head_id", "source", "round", "run_id", "template_id",
                  "template_version", "response_key", "sample", "logprob_sum", "created_at")  # fmt: skip
RUN_COLUMNS = ("teacher", "backend", "model")
BATCH = 5000


def curated_rows(store: Store, sel: Selection = Selection()) -> Iterator[dict[str, Any]]:
    """Selected triples with provenance and critic columns, streamed in rowid order."""
    src = TripleSource(store, sel)
    runs = {r["id"]: r for r in store.query("select id, teacher, backend, model from runs")}
    for row in store.db.query(src.sql, src.params):
        if not sel.include_none and (row["tail"] or "").strip().lower() == "none":
            continue
        out = {c: row.get(c) for c in TRIPLE_COLUMNS}
        run = runs.get(row.get("run_id") or "", {})
        out.update({c: run.get(c) for c in RUN_COLUMNS})
        out["relation_group"] = RELATIONS[row["relation"]].group if row["relation"] in RELATIONS else None
        out.update(_critic_columns(store, row["id"], src.critics))
        yield out


def _critic_columns(store: Store, triple_id: str, critics: dict[str, str]) -> dict[str, Any]:
    found = {
        r["critic"]: r
        for r in store.query(
            "select critic, critic_version, score, decision from critic_scores where item_table = 'triples' and item_id = ?",
            (triple_id,),
        )
        if critics.get(r["critic"]) == r["critic_version"]
    }
    out: dict[str, Any] = {}
    for name, version in critics.items():
        hit = found.get(name)
        out[f"{name}_score"] = hit["score"] if hit else None
        out[f"{name}_decision"] = hit["decision"] if hit else None
        out[f"{name}_version"] = version if hit else None
    return out


def arrow_table(store: Store, sel: Selection = Selection()) -> Any:
    """The selection as a ``pyarrow.Table`` (columns typed; all rows in memory)."""
    import pyarrow as pa

    rows = list(curated_rows(store, sel))
    if not rows:
        raise UserError(f"{store.path}: no triples match {sel.describe()}")
    return pa.Table.from_pylist(rows)


def write_parquet(store: Store, sel: Selection, out: Path, progress: bool = False) -> dict[str, Any]:
    """Parquet file written under a temporary name and renamed when complete."""
    import pyarrow.parquet as pq

    table = arrow_table(store, sel)
    with atomic_write(out, "wb") as fh:
        pq.write_table(table, fh)
    return {"triples": table.num_rows, "columns": table.num_columns, "files": [str(out)]}


def write_chat_jsonl(store: Store, sel: Selection, out: Path, progress: bool = False) -> dict[str, Any]:
    """Training examples in chat format (``messages``: user = COMET-style prompt, assistant = tail)."""
    from symkd.students.data import comet_prompt

    n = 0
    with atomic_write(out) as fh:
        for row in curated_rows(store, sel):
            messages = [{"role": "user", "content": comet_prompt(row["head"], row["relation"])},
                        {"role": "assistant", "content": row["tail"].strip()}]  # fmt: skip
            fh.write(dumps({"messages": messages, "id": row["id"], "run_id": row["run_id"]}) + "\n")
            n += 1
        if not n:  # inside the block: an existing file stays as it was
            raise UserError(f"{store.path}: no triples match {sel.describe()}")
    return {"lines": n, "files": [str(out)]}


#: dataset formats of ``symkd export`` (the graph formats are in :mod:`symkd.graphs.export`)
FORMATS = {"parquet": write_parquet, "chat-jsonl": write_chat_jsonl}


def to_dataset(
    db: str | Path | Store,
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    relations: Sequence[str] = (),
    include_none: bool = False,
) -> Any:
    """The curated triples as a Hugging Face ``datasets.Dataset`` (same rows as the Parquet export)."""
    import datasets

    sel = Selection(critics=tuple(critics), min_score=min_score, relations=tuple(relations), include_none=include_none)
    store = db if isinstance(db, Store) else Store(db, create=False, readonly=True)
    try:
        return datasets.Dataset(datasets.table.InMemoryTable(arrow_table(store, sel)))
    finally:
        if store is not db:
            store.close()
