"""The agents pipeline's tables (owned through :func:`symkd.store.tables.ensure_tables`).

* ``trajectories``: one row per episode (a task solved once by one model, or converted from a
  gold rationale): its steps (thought, code, observation, errors, tool calls), the final
  answer and whether it matches the reference, counts, token usage, and provenance (the
  runs, template id+version and response keys it came from). ``source`` says where it came
  from: ``teacher``, ``gold-rationales`` or ``eval``. Verifier decisions live in the core
  ``critic_scores`` table (item_table ``trajectories``); rejected rows stay for
  negative-aware training.
* ``corpus_docs`` + ``corpus_fts`` (FTS5): documents the ``search`` tool retrieves (BM25).
* ``gsm8k_evaluations`` + ``gsm8k_predictions``: every evaluation (model, data, mode, config,
  accuracy with its 95 % Wilson interval) and its per-item predictions, failed requests
  included (as wrong), so two students can be compared item by item.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from symkd.store.db import Store, utcnow
from symkd.store.datasette import TableDoc, register_tables
from symkd.store.tables import create_view, ensure_tables

if TYPE_CHECKING:
    import sqlite_utils

JSON_FIELDS = ("steps", "messages", "response_keys", "run_ids", "config")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _v1(db: sqlite_utils.Database) -> None:
    db["trajectories"].create(
        {
            "id": str, "source": str, "task_id": str, "sample": int, "question": str, "reference": str,
            "model": str, "template_id": str, "template_version": str, "final_answer": str, "correct": int,
            "n_steps": int, "hit_step_limit": int, "parse_errors": int, "exec_errors": int,
            "prompt_tokens": int, "completion_tokens": int, "first_thought": str, "steps": str,
            "messages": str, "response_keys": str, "run_ids": str, "config": str, "created_at": str,
        },
        pk="id",
        not_null={"source", "task_id"},
    )  # fmt: skip
    db["trajectories"].create_index(["source", "task_id"])
    db["corpus_docs"].create({"id": str, "corpus": str, "title": str, "text": str, "origin": str}, pk="id")
    db.execute(
        "create virtual table corpus_fts using fts5(title, text, doc_id unindexed, corpus unindexed, "
        "tokenize='porter unicode61')"
    )


def _v2(db: sqlite_utils.Database) -> None:
    """GSM8K evaluations and their per-item predictions (the rows paired tests compare)."""
    db["gsm8k_evaluations"].create(
        {"id": str, "model": str, "data": str, "mode": str, "n": int, "correct": int, "accuracy": float,
         "ci95_low": float, "ci95_high": float, "answered_rate": float, "config": str, "metrics": str,
         "created_at": str},
        pk="id",
    )  # fmt: skip
    db["gsm8k_predictions"].create(
        {"evaluation_id": str, "task_id": str, "sample": int, "prediction": str, "correct": int, "answered": int,
         "finished": int, "error": str, "completion": str, "trajectory_id": str},
        pk=("evaluation_id", "task_id", "sample"),
        foreign_keys=[("evaluation_id", "gsm8k_evaluations", "id")],
    )  # fmt: skip


VERIFIED_TRAJECTORIES = """
select t.id, t.source, t.task_id, t.sample, t.model, t.question, t.reference, t.final_answer, t.correct,
       t.n_steps, t.exec_errors, t.template_id, t.template_version, t.created_at,
       (select s.run_id from critic_scores s where s.item_table = 'trajectories' and s.item_id = t.id
        and s.critic = 'verifier' and s.decision = 'keep' order by s.rowid desc limit 1) as verifier_run
from trajectories t
where t.source != 'teacher' or exists (select 1 from critic_scores s where s.item_table = 'trajectories'
      and s.item_id = t.id and s.critic = 'verifier' and s.decision = 'keep')
"""


def _v3(db: sqlite_utils.Database) -> None:
    """Links for Datasette and sqlite-utils: trajectory -> runs (``trajectory_runs``, from the
    ``run_ids`` JSON), critic score -> trajectory (generated ``critic_scores.trajectory_id``),
    and the ``verified_trajectories`` view. Nothing is rebuilt: every row stays."""
    db["trajectory_runs"].create(
        {"trajectory_id": str, "run_id": str},
        pk=("trajectory_id", "run_id"),
        foreign_keys=[("trajectory_id", "trajectories", "id"), ("run_id", "runs", "id")],
    )
    db["trajectory_runs"].create_index(["run_id"])
    db.execute(
        "insert or ignore into trajectory_runs (trajectory_id, run_id) select t.id, r.value from trajectories t, "
        "json_each(case when json_valid(t.run_ids) then t.run_ids else '[]' end) r where r.type = 'text'"
    )
    if "trajectory_id" not in {row[1] for row in db.execute("pragma table_xinfo(critic_scores)")}:
        db.execute(
            "alter table critic_scores add column trajectory_id text generated always as "
            "(case when item_table = 'trajectories' then item_id end) virtual references trajectories(id)"
        )
    create_view(db, "verified_trajectories", VERIFIED_TRAJECTORIES)


MIGRATIONS = [_v1, _v2, _v3]

_PROVENANCE = {"template_id": "prompt template id", "template_version": "prompt template version",
               "created_at": "UTC time it was stored (ISO 8601)"}  # fmt: skip
TRAJECTORY_COLUMNS = {
    "id": "hash of source, model, template, task and sample", "source": "teacher | gold-rationales | gold-variants | "
    "eval | self-round-k", "task_id": "the task's id in its data file", "sample": "which attempt at the task",
    "question": "the task", "reference": "the reference answer", "model": "the model that solved it",
    **_PROVENANCE, "final_answer": "the answer it gave", "correct": "1 when it matches the reference",
    "n_steps": "steps taken", "hit_step_limit": "1 when it ran out of steps", "parse_errors": "steps that did not parse",
    "exec_errors": "steps whose code raised", "prompt_tokens": "prompt tokens, all steps",
    "completion_tokens": "completion tokens, all steps", "first_thought": "the prefilled first thought, if any",
    "steps": "JSON list of steps: thought, code, observation, errors, tool calls", "messages": "JSON: the conversation",
    "response_keys": "JSON list of the responses it came from", "run_ids": "JSON list of its runs (see trajectory_runs)",
    "config": "JSON: agent settings",
}  # fmt: skip
DOCS = [
    TableDoc("trajectories", "Agent episodes: one task solved once by one model, or converted from a gold rationale; "
             "verifier decisions are in critic_scores (item_table trajectories).", TRAJECTORY_COLUMNS,
             label="question", facets=("source", "correct")),
    TableDoc("trajectory_runs", "Which runs each trajectory came from (its run_ids, one row per run).",
             {"trajectory_id": "the trajectory", "run_id": "a run it came from"}),
    TableDoc("verified_trajectories", "View: teacher trajectories the verifier kept, and the other sources "
             "(verified by construction, or evaluations): what read_trajectories(verified='kept') returns.",
             {**{k: v for k, v in TRAJECTORY_COLUMNS.items() if f"t.{k}," in VERIFIED_TRAJECTORIES},
              "verifier_run": "the run that scored it keep (null for sources not verified by the critic)"},
             facets=("source",)),
    TableDoc("corpus_docs", "Documents the search tool retrieves.", {"id": "document id", "corpus": "corpus name",
             "title": "title", "text": "text", "origin": "where it came from"}, label="title"),
    TableDoc("corpus_fts", "Full-text index (FTS5, BM25) over corpus_docs.", {}),
    TableDoc("gsm8k_evaluations", "GSM8K evaluations: model, data, mode, accuracy with its 95 % Wilson interval.", {
        "id": "hash of model, data, mode and config", "model": "model evaluated", "data": "data file", "mode": "agent mode",
        "n": "items", "correct": "items right", "accuracy": "correct / n", "ci95_low": "Wilson 95 % low",
        "ci95_high": "Wilson 95 % high", "answered_rate": "share of items answered", "config": "JSON: settings",
        "metrics": "JSON: further metrics", "created_at": "UTC time (ISO 8601)"}, label="model"),
    TableDoc("gsm8k_predictions", "Per-item predictions of an evaluation (failed requests count as wrong).", {
        "evaluation_id": "the evaluation", "task_id": "the task", "sample": "which attempt", "prediction": "the answer",
        "correct": "1 when right", "answered": "1 when it gave an answer", "finished": "1 when it finished",
        "error": "why it failed", "completion": "the model's text", "trajectory_id": "its trajectory, when stored"}),
    TableDoc("critic_scores", "", {"trajectory_id": "item_id when the item is a trajectory (generated, agents v3)"}),
]  # fmt: skip
register_tables("agents", MIGRATIONS, DOCS)


def ensure(store: Store) -> None:
    ensure_tables(store, "agents", MIGRATIONS)


def trajectory_id(source: str, model: str, template: str, task_id: str, sample: int, extra: str = "") -> str:
    blob = json.dumps([source, model, template, task_id, sample, extra])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _storable(value: Any) -> Any:
    """Text SQLite and every exporter can encode: a lone surrogate (model text can hold one,
    e.g. ``final_answer(chr(0xd800))``) becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def write_trajectories(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Upsert trajectory rows (JSON fields serialised); returns how many were written."""
    ensure(store)
    now = utcnow()
    out = []
    for row in rows:
        row = {**row, "created_at": row.get("created_at") or now}
        for name in JSON_FIELDS:
            if name in row and not isinstance(row[name], str):
                row[name] = json.dumps(row[name], ensure_ascii=False)
        out.append({k: _storable(v) for k, v in row.items()})
    links = [(row["id"], row["run_ids"]) for row in out if isinstance(row.get("run_ids"), str)]
    with store.transaction() as db:
        db["trajectories"].upsert_all(out, pk="id", batch_size=200)
        db.conn.executemany("delete from trajectory_runs where trajectory_id = ?", [(tid,) for tid, _ in links])
        db.conn.executemany(
            "insert or ignore into trajectory_runs (trajectory_id, run_id) select ?1, value from "
            "json_each(case when json_valid(?2) then ?2 else '[]' end) where type = 'text'", links
        )  # fmt: skip
    return len(out)


def read_trajectories(
    store: Store,
    *,
    sources: Sequence[str] = (),
    verified: str | None = None,
    where: str | None = None,
) -> list[dict[str, Any]]:
    """Trajectory rows (JSON fields parsed), optionally of some sources.

    ``verified`` filters teacher trajectories (other sources are verified by construction or
    are evaluations): None = all; ``"kept"`` = the verifier critic kept them (rows it has not
    scored are left out); ``"rejected"`` = it dropped them.
    """
    ensure(store)
    clauses, params = [], []
    if sources:
        clauses.append(f"t.source in ({','.join('?' * len(sources))})")
        params += list(sources)
    if verified is not None:
        decision = "keep" if verified == "kept" else "drop"
        clauses.append(
            "(t.source != 'teacher' or exists (select 1 from critic_scores s where s.item_table = 'trajectories' "
            "and s.item_id = t.id and s.critic = 'verifier' and s.decision = ?))"
        )
        params.append(decision)
    if where:
        clauses.append(f"({where})")
    sql = "select t.* from trajectories t" + (" where " + " and ".join(clauses) if clauses else "") + " order by t.rowid"
    rows = store.query(sql, params)
    for row in rows:
        for name in JSON_FIELDS:
            if isinstance(row.get(name), str):
                row[name] = json.loads(row[name])
    return rows


def write_evaluation(store: Store, evaluation: dict[str, Any], predictions: Sequence[dict[str, Any]]) -> None:
    """Replace an evaluation and its predictions in one transaction."""
    ensure(store)
    row = {**evaluation, "created_at": utcnow()}
    for name in ("config", "metrics"):
        row[name] = json.dumps(row.get(name), ensure_ascii=False, default=str)
    with store.transaction() as db:
        db.execute("delete from gsm8k_predictions where evaluation_id = ?", [row["id"]])
        db["gsm8k_evaluations"].upsert(row, pk="id")
        db["gsm8k_predictions"].insert_all([{**p, "evaluation_id": row["id"]} for p in predictions], batch_size=500)


def read_predictions(store: Store, evaluation_id: str) -> list[dict[str, Any]]:
    """An evaluation's per-item predictions in task order (as written)."""
    ensure(store)
    return store.query("select * from gsm8k_predictions where evaluation_id = ? order by rowid", [evaluation_id])
