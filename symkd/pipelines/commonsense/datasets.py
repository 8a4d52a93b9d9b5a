"""Curated knowledge in the formats trainers read: Parquet, Hugging Face ``datasets``, chat JSONL.

One row per curated triple with its provenance (run, teacher, template id+version, response
key, sample, round, source) and, for every critic that scored triples, its latest version's
score, decision and version as columns ``score_<critic>``, ``decision_<critic>``,
``version_<critic>`` (the names the graph exports use). The selection is the graph's
(:class:`symkd.graphs.Selection`), so a Parquet export and a GraphML export of the same options
hold the same triples.

Parquet columns have fixed types whatever the data (:func:`triple_schema`: ``logprob_sum`` is a
float64 even when a backend gave no log-probabilities, ``created_at`` a UTC timestamp), so the
files of two runs concatenate; the file's key-value metadata says which symkd wrote it and what
was selected (:func:`parquet_metadata`).

Training data comes in TRL's two conversational forms, both with an explicit system turn (so a
chat template never adds its own default system prompt):

* ``chat-jsonl``: ``{"messages": [system, user, assistant], ...}``;
* ``prompt-completion``: ``{"prompt": [system, user], "completion": [assistant], ...}``, on which
  TRL's ``SFTTrainer`` computes the loss on the completion only (``completion_only_loss``).

    symkd export --db run.db --format parquet --out kept.parquet --critic rules,classifier
    symkd export --db run.db --format prompt-completion --out train.jsonl --critic rules
    ds = symkd.to_dataset("run.db", critics=["rules", "classifier"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from symkd.errors import UserError
from symkd.graphs.arrow import arrow_type, parquet_metadata, parse_time
from symkd.graphs.build import Selection, TripleSource, attr_name
from symkd.graphs.triples import TRIPLE_TABLE
from symkd.jsonio import atomic_write, dumps
from symkd.pipelines.commonsense.comet import comet_prompt
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.store.db import Store, opened

#: the system turn of every commonsense training example
SYSTEM_PROMPT = "You complete commonsense inferences about everyday events: answer with a short phrase that replaces [GEN]."
TRIPLE_COLUMNS = ("id", "head", "relation", "tail", "head_id", "source", "round", "run_id", "template_id",
                  "template_version", "response_key", "sample", "logprob_sum", "created_at")  # fmt: skip
RUN_COLUMNS = ("teacher", "backend", "model")
#: column -> kind (see :func:`arrow_type`); everything else is a string
KINDS = {"round": "int", "sample": "int", "logprob_sum": "float", "created_at": "time"}
BATCH = 5000


def critic_columns(critic: str) -> tuple[str, str, str]:
    """The score, decision and version column of a critic (``score_<critic>``, as in the graph exports)."""
    name = attr_name(critic)
    return f"score_{name}", f"decision_{name}", f"version_{name}"


def curated_rows(store: Store, sel: Selection = Selection()) -> Iterator[dict[str, Any]]:
    """Selected triples with provenance and critic columns, streamed in rowid order."""
    yield from _rows(TripleSource(store, sel))


def _rows(src: TripleSource) -> Iterator[dict[str, Any]]:
    store, sel = src.store, src.sel
    runs = {r["id"]: r for r in store.query("select id, teacher, backend, model from runs")}
    for row in store.db.query(src.sql, src.params):
        if not sel.include_none and (row["tail"] or "").strip().lower() == "none":
            continue
        out = {c: row.get(c) for c in TRIPLE_COLUMNS}
        run = runs.get(row.get("run_id") or "", {})
        out.update({c: run.get(c) for c in RUN_COLUMNS})
        out["relation_group"] = RELATIONS[row["relation"]].group if row["relation"] in RELATIONS else None
        out.update(_critic_values(store, row["id"], src.critics))
        yield out


def _critic_values(store: Store, triple_id: str, critics: dict[str, str]) -> dict[str, Any]:
    found = {
        r["critic"]: r
        for r in store.query(
            "select critic, critic_version, score, decision from critic_scores where item_table = ? and item_id = ?",
            (TRIPLE_TABLE, triple_id),
        )
        if critics.get(r["critic"]) == r["critic_version"]
    }
    out: dict[str, Any] = {}
    for name, version in critics.items():
        hit = found.get(name)
        score, decision, version_col = critic_columns(name)
        out[score] = None if hit is None or hit["score"] is None else float(hit["score"])
        out[decision] = hit["decision"] if hit else None
        out[version_col] = version if hit else None
    return out


# -- Parquet ---------------------------------------------------------------------------


def triple_schema(critics: Sequence[str] = ()) -> Any:
    """The Parquet schema of the triples: the same types in every run, with or without data."""
    import pyarrow as pa

    names = [*TRIPLE_COLUMNS, *RUN_COLUMNS, "relation_group"]
    fields = [pa.field(n, arrow_type(KINDS.get(n, "str"))) for n in names]
    for critic in critics:
        score, decision, version = critic_columns(critic)
        fields += [pa.field(score, pa.float64()), pa.field(decision, pa.string()), pa.field(version, pa.string())]
    return pa.schema(fields)


def _selection_info(src: TripleSource) -> dict[str, Any]:
    sel = src.sel
    return {"selection": {"critics": list(sel.critics), "min_score": sel.min_score, "relations": list(sel.relations),
                          "include_none": sel.include_none, "text": sel.describe()},
            "critics": src.critics}  # fmt: skip


def _batches(src: TripleSource, schema: Any) -> Iterator[Any]:
    import pyarrow as pa

    rows: list[dict[str, Any]] = []
    for row in _rows(src):
        row["created_at"] = parse_time(row["created_at"], f"triple {row['id']}")
        rows.append(row)
        if len(rows) == BATCH:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


def _typed_source(store: Store, sel: Selection) -> tuple[TripleSource, Any]:
    src = TripleSource(store, sel)
    schema = triple_schema(list(src.critics)).with_metadata(parquet_metadata(**_selection_info(src)))
    return src, schema


def arrow_table(store: Store, sel: Selection = Selection()) -> Any:
    """The selection as a ``pyarrow.Table`` with :func:`triple_schema`'s types (all rows in memory)."""
    import pyarrow as pa

    src, schema = _typed_source(store, sel)
    table = pa.Table.from_batches(list(_batches(src, schema)), schema=schema)
    if not table.num_rows:
        raise UserError(f"{store.path}: no triples match {sel.describe()}")
    return table


def write_parquet(store: Store, sel: Selection, out: Path, progress: bool = False) -> dict[str, Any]:
    """Parquet file streamed in batches to a temporary name and renamed when complete."""
    import pyarrow.parquet as pq

    src, schema = _typed_source(store, sel)
    rows = 0
    with atomic_write(out, "wb") as fh:
        with pq.ParquetWriter(fh, schema) as writer:
            for batch in _batches(src, schema):
                writer.write_batch(batch)
                rows += batch.num_rows
        if not rows:  # inside the block: an existing file stays as it was
            raise UserError(f"{store.path}: no triples match {sel.describe()}")
    return {"triples": rows, "columns": len(schema), "files": [str(out)]}


# -- training JSONL (TRL's conversational forms) -----------------------------------------


def _turns(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(prompt turns, completion turns) of one triple: system + COMET-style user prompt, the tail."""
    prompt = [{"role": "system", "content": SYSTEM_PROMPT},
              {"role": "user", "content": comet_prompt(row["head"], row["relation"])}]  # fmt: skip
    return prompt, [{"role": "assistant", "content": row["tail"].strip()}]


def _metadata(row: dict[str, Any], critics: dict[str, str]) -> dict[str, Any]:
    """What a training row carries besides its turns: ids, relation and each critic's score and decision."""
    out = {"id": row["id"], "run_id": row["run_id"], "relation": row["relation"]}
    for critic in critics:
        score, decision, _ = critic_columns(critic)
        out.update({score: row[score], decision: row[decision]})
    return out


def chat_example(prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> dict[str, Any]:
    return {"messages": prompt + completion}


def prompt_completion_example(prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> dict[str, Any]:
    return {"prompt": prompt, "completion": completion}


def _write_examples(store: Store, sel: Selection, out: Path, shape: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    src = TripleSource(store, sel)
    n = 0
    with atomic_write(out) as fh:
        for row in _rows(src):
            fh.write(dumps({**shape(*_turns(row)), **_metadata(row, src.critics)}) + "\n")
            n += 1
        if not n:  # inside the block: an existing file stays as it was
            raise UserError(f"{store.path}: no triples match {sel.describe()}")
    return {"lines": n, "files": [str(out)]}


def write_chat_jsonl(store: Store, sel: Selection, out: Path, progress: bool = False) -> dict[str, Any]:
    """TRL conversational language modelling: ``messages`` = system, user (COMET-style prompt), assistant (tail)."""
    return _write_examples(store, sel, out, chat_example)


def write_prompt_completion(store: Store, sel: Selection, out: Path, progress: bool = False) -> dict[str, Any]:
    """TRL conversational prompt-completion: ``prompt`` = system + user, ``completion`` = the tail (the loss)."""
    return _write_examples(store, sel, out, prompt_completion_example)


#: dataset formats of ``symkd export`` (the graph formats are in :mod:`symkd.graphs.export`)
FORMATS = {"parquet": write_parquet, "chat-jsonl": write_chat_jsonl, "prompt-completion": write_prompt_completion}


def to_dataset(
    db: str | Path | Store,
    *,
    critics: Sequence[str] = (),
    min_score: float | None = None,
    relations: Sequence[str] = (),
    include_none: bool = False,
) -> Any:
    """The curated triples as a Hugging Face ``datasets.Dataset`` (same rows and types as the Parquet export)."""
    import datasets

    sel = Selection(critics=tuple(critics), min_score=min_score, relations=tuple(relations), include_none=include_none)
    with opened(db, create=False, readonly=True) as store:
        return datasets.Dataset(datasets.table.InMemoryTable(arrow_table(store, sel)))
