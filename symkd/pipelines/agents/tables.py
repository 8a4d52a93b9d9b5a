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
from typing import Any, Iterable, Sequence

import sqlite_utils

from symkd.store.db import Store, utcnow
from symkd.store.tables import ensure_tables

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


MIGRATIONS = [_v1, _v2]


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
    with store.transaction() as db:
        db["trajectories"].upsert_all(out, pk="id", batch_size=200)
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
