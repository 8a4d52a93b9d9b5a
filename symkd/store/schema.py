"""Schema of the run store and its forward migrations.

Each migration is a function ``(db) -> None`` appended to :data:`MIGRATIONS`; the store's
``meta.schema_version`` says how many have run. Never edit a released migration: add one.
Tables (all browsable as is with ``sqlite3`` or Datasette; JSON is stored in plain TEXT columns
(``config``, ``input``, ``completions``, ``details``, ...), each described as JSON in :data:`DOCS`):

- ``runs``: one row per distinct job (its id is a hash of the job's config, so rerunning the
  same command resumes the same run). No secrets: teacher settings are redacted first.
- ``requests`` / ``responses``: the content-addressed request cache (key = sha256).
- ``run_items``: which of the caller's items a run asked for, and under which request key
  and template id+version (the provenance link for every curated row).
- ``critic_scores``: one row per curated item and critic name+version with its score and
  keep/drop decision (the items live in the pipelines' own tables).
- ``training_runs`` / ``evaluations`` / ``self_imitation_rounds``: students trained from the
  store, their scores on a pipeline's evaluation data, and the per-round counts of ``--rounds``.
- ``claims``: which process is sending which request key right now (a lease renewed by a
  heartbeat), so concurrent runs of one job split it instead of paying twice; ``runs`` also
  records the host, pid and heartbeat of the process that last opened it (v4).
- v5 (:mod:`symkd.store.schema_links`): ``critic_scores`` rebuilt with a foreign key to its run
  (declared for Datasette and sqlite-utils, not enforced).

The pipelines own their tables, with migrations of their own (:mod:`symkd.store.tables`); those
the core reads (the commonsense ``events`` / ``triples``, which v2 and v5 made before) come
from the ``symkd.tables`` entry-point group and are migrated with the core on every writable
open (:func:`migrate`, :mod:`symkd.store.owners`). Released migrations are not edited for what
they do to a database that ran them; v2 no longer makes the commonsense tables, whose own
migration adopts the ones a database already has.

Every table and view is described in :data:`DOCS` (here and beside the v5 definitions); the
descriptions become Datasette metadata (:mod:`symkd.store.datasette`).

``meta.schema_version`` is also symkd's marker: a non-empty database without it is not
symkd's and is refused unless adopted (:func:`_check_marker`, which :class:`symkd.store.base.Store`
calls through :func:`symkd.store.base.set_schema`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlite3
from pathlib import Path
from typing import Callable

from symkd.errors import UserError
from symkd.store import schema_links
from symkd.store.base import Schema, Store, set_schema
from symkd.store.owners import TableDoc, opened_with_every_store, register_tables
from symkd.store.tables import clash_message, ensure_tables, foreign_tables, run_migrations

if TYPE_CHECKING:
    import sqlite_utils


def _v1_core(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["runs"].create(
        {
            "id": str,
            "kind": str,
            "status": str,  # running | done | incomplete | failed | interrupted
            "teacher": str,  # redacted spec, e.g. openai:gpt-4o-mini
            "backend": str,
            "model": str,
            "config": str,  # JSON
            "templates": str,  # JSON list of {"id", "version"}
            "symkd_version": str,
            "created_at": str,
            "updated_at": str,
            "finished_at": str,
            "attempts": int,
        },
        pk="id",
        not_null={"kind", "status"},
        if_not_exists=True,
    )
    db["requests"].create(
        {
            "key": str,
            "backend": str,
            "model": str,
            "kind": str,  # chat | completion
            "input": str,  # JSON: messages list or prompt string
            "params": str,  # JSON
            "sample_index": int,
            "created_at": str,
        },
        pk="key",
        if_not_exists=True,
    )
    db["responses"].create(
        {
            "key": str,
            "status": str,  # ok | failed
            "text": str,  # first completion, for browsing
            "completions": str,  # JSON list of {text, finish_reason, token_logprobs}
            "finish_reason": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "error": str,
            "attempts": int,
            "latency_s": float,
            "created_at": str,
        },
        pk="key",
        foreign_keys=[("key", "requests", "key")],
        if_not_exists=True,
    )
    db["run_items"].create(
        {
            "run_id": str,
            "item_id": str,
            "request_key": str,
            "template_id": str,
            "template_version": str,
        },
        pk=("run_id", "item_id"),
        foreign_keys=[("run_id", "runs", "id"), ("request_key", "requests", "key")],
        if_not_exists=True,
    )
    db["run_items"].create_index(["request_key"], if_not_exists=True)
    db["responses"].create_index(["status"], if_not_exists=True)


def _v2_critic_scores(db: sqlite_utils.Database) -> None:
    """Per-critic scores of curated items (v2 also made the commonsense tables before they were
    the commonsense pipeline's own: :mod:`symkd.store.owners`)."""
    db["critic_scores"].create(
        {
            "item_table": str,  # triples | events
            "item_id": str,
            "critic": str,
            "critic_version": str,
            "score": float,  # higher = better
            "decision": str,  # keep | drop
            "threshold": float,
            "details": str,  # JSON
            "run_id": str,
            "created_at": str,
        },
        pk=("item_table", "item_id", "critic", "critic_version"),
        if_not_exists=True,
    )
    db["critic_scores"].create_index(["critic", "decision"], if_not_exists=True)


def _v3_students(db: sqlite_utils.Database) -> None:
    """Students trained from the store, their evaluations, and self-imitation rounds."""
    db["training_runs"].create(
        {
            "id": str,  # hash of the config+data fingerprint, folder and round (a resumed run keeps its id)
            "out_dir": str,
            "base_model": str,
            "round": int,  # self-imitation round (null outside --rounds)
            "config": str,  # JSON
            "data": str,  # JSON: source, filters, counts
            "steps": int,
            "train_loss": float,
            "eval_loss": float,
            "tokens_per_s": float,
            "hardware": str,
            "created_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db["evaluations"].create(
        {
            "id": str,  # hash of model/teacher, data part and decoding
            "kind": str,  # commonsense
            "model": str,  # student folder or teacher spec (redacted)
            "data": str,  # JSON: file, split, counts
            "decoding": str,  # JSON
            "round": int,
            "bleu1": float,
            "bleu2": float,
            "bleu3": float,
            "bleu4": float,
            "rougeL": float,
            "cider": float,
            "scores": str,  # JSON: the full report, per relation included
            "created_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db["self_imitation_rounds"].create(
        {
            "round": int,  # k: the k-th student (round 1 trains on the teacher's kept triples)
            "generator": str,  # who produced the triples it added: teacher or the previous student
            "generated": int,  # new triples that generator added to the store
            "kept": int,  # of those, kept by every critic
            "train_examples": int,  # the union the round's student was trained on
            "student": str,  # its folder
            "training_run": str,
            "evaluation": str,
            "created_at": str,
        },
        pk="round",
        if_not_exists=True,
    )


def _v4_claims(db: sqlite_utils.Database) -> None:
    """Leases on request keys, and who runs a run (so a dead run can be told from a live one)."""
    db["claims"].create(
        {
            "key": str,  # the request key being sent
            "owner": str,  # host:pid:token of the claiming process (one token per generate call)
            "host": str,
            "pid": int,
            "run_id": str,
            "expires_at": float,  # unix time; renewed by the owner's heartbeat, free once passed
        },
        pk="key",
        if_not_exists=True,
    )
    db["claims"].create_index(["owner"], if_not_exists=True)
    runs = db["runs"]
    for column, kind in (("host", str), ("pid", int), ("heartbeat_at", float)):
        if column not in runs.columns_dict:
            runs.add_column(column, kind)


MIGRATIONS: list[Callable[["sqlite_utils.Database"], None]] = [
    _v1_core, _v2_critic_scores, _v3_students, _v4_claims, schema_links.v5_links,
]  # fmt: skip


def migrate(store: Store) -> int:
    """Bring the core schema, then the tables of every owner in the ``symkd.tables`` entry-point
    group, up to date in one transaction (nothing is written, no lock taken, when all are);
    return the core schema version."""
    owners = opened_with_every_store()
    versions = _versions(store)
    wanted = {"schema_version": len(MIGRATIONS), **{f"schema_version:{o.name}": len(o.migrations) for o in owners}}
    if all(versions.get(key) == str(n) for key, n in wanted.items()):
        return len(MIGRATIONS)
    with store.transaction():
        run_migrations(store, "schema_version", MIGRATIONS, "schema version")
        for owner in owners:
            ensure_tables(store, owner.name, owner.migrations)
    return len(MIGRATIONS)


def _versions(store: Store) -> dict[str, str]:
    if not store.scalar("select count(*) from sqlite_master where type = 'table' and name = 'meta'"):
        return {}
    rows = store.conn.execute("select key, value from meta where key like 'schema_version%'").fetchall()
    return dict(rows)


def _check_marker(path: Path, conn: sqlite3.Connection, adopt: bool) -> int:
    """The file's symkd schema version (0 when empty), read without writing anything.

    A non-empty database without symkd's marker is someone else's: refused unless adopted.
    A newer schema than this symkd knows is refused in every mode, read-only included.
    """
    tables = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
    if not tables:
        return 0
    row = None
    if "meta" in tables:
        try:
            row = conn.execute("select value from meta where key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # someone else's table called meta: no marker
            row = None
    if row is None:
        if not adopt:
            conn.close()
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise UserError(
                f"{path}: not a symkd database (it holds tables {shown}); left unchanged - "
                "pass --adopt (adopt=True in Python) to add symkd's tables to it"
            )
        clashes = foreign_tables(conn, MIGRATIONS, core=True)
        for owner in opened_with_every_store():
            clashes += [name for name in foreign_tables(conn, owner.migrations) if name not in clashes]
        if clashes:  # adopting would fail half-way (or write into the user's table): refuse first
            conn.close()
            raise UserError(clash_message(path, clashes, "symkd's tables"))
        return 0
    current = int(row[0])
    if current > len(MIGRATIONS):
        conn.close()
        raise UserError(
            f"{path}: schema version {current} is newer than this symkd understands "
            f"({len(MIGRATIONS)}); upgrade symkd"
        )
    return current



_WHEN = "UTC time (ISO 8601)"
DOCS: list[TableDoc] = [
    TableDoc("meta", "Key-value settings of the store: schema_version (core) and schema_version:<pipeline>.",
             {"key": "setting name", "value": "its value"}),
    TableDoc("runs", "One row per distinct job; its id hashes the job's config, so rerunning a command resumes it.", {
        "id": "hash of kind, teacher, config and items (16 hex chars)",
        "kind": "what the run did: generate, a pipeline stage, critic (a scoring pass), critic-judge, ...",
        "status": "running | done | incomplete | failed | interrupted",
        "teacher": "redacted teacher spec, e.g. openai:gpt-4o-mini (critic:<name> for a scoring run)",
        "backend": "teacher backend", "model": "teacher model",
        "config": "JSON: the run's settings (teacher settings redacted, never a secret)",
        "templates": 'JSON list of {"id", "version"} of the prompt templates used',
        "symkd_version": "symkd version that created the run", "created_at": _WHEN, "updated_at": _WHEN,
        "finished_at": _WHEN, "attempts": "how many times it was started (a resumed run counts again)",
        "host": "host of the process that last opened it", "pid": "that process's id",
        "heartbeat_at": "unix time of its last heartbeat (a stale one reads as interrupted)",
    }, label="kind", facets=("kind", "status")),
    TableDoc("requests", "The content-addressed request cache: one row per distinct request (key = sha256).", {
        "key": "sha256 of backend, model, input, parameters and sample index", "backend": "teacher backend",
        "model": "teacher model", "kind": "chat | completion", "input": "JSON: messages list or prompt string",
        "params": "JSON: generation parameters", "sample_index": "which sample of the same request", "created_at": _WHEN,
    }, label="model"),
    TableDoc("responses", "The teacher's answer to each request (ok or failed, with usage and latency).", {
        "key": "the request's key", "status": "ok | failed", "text": "first completion, for browsing",
        "completions": "JSON list of {text, finish_reason, token_logprobs}", "finish_reason": "of the first completion",
        "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens", "error": "why it failed",
        "attempts": "tries", "latency_s": "seconds for the answer", "created_at": _WHEN,
    }, label="text", facets=("status",)),
    TableDoc("run_items", "Which of the caller's items a run asked for, under which request key and template.", {
        "run_id": "the run", "item_id": "the caller's item id", "request_key": "the request sent for it",
        "template_id": "prompt template id", "template_version": "prompt template version",
    }),
    TableDoc("training_runs", "Students trained from the store.", {
        "id": "hash of the config, data fingerprint, folder and round", "out_dir": "the student's folder",
        "base_model": "the model fine-tuned", "round": "self-imitation round (null outside --rounds)",
        "config": "JSON: training settings", "data": "JSON: source, filters, counts", "steps": "optimizer steps",
        "train_loss": "final training loss", "eval_loss": "final evaluation loss", "tokens_per_s": "training speed",
        "hardware": "where it trained", "created_at": _WHEN,
    }, label="out_dir"),
    TableDoc("evaluations", "Evaluations of students and teachers on a pipeline's evaluation data (its metrics).", {
        "id": "hash of model/teacher, data part and decoding", "kind": "commonsense",
        "model": "student folder or redacted teacher spec", "data": "JSON: file, split, counts",
        "decoding": "JSON: decoding settings", "round": "self-imitation round", "bleu1": "BLEU-1", "bleu2": "BLEU-2",
        "bleu3": "BLEU-3", "bleu4": "BLEU-4", "rougeL": "ROUGE-L", "cider": "CIDEr",
        "scores": "JSON: the full report, per relation included", "created_at": _WHEN,
    }, label="model"),
    TableDoc("self_imitation_rounds", "Per self-imitation round: triples added and kept, and the student trained.", {
        "round": "k: the k-th student (round 1 trains on the teacher's kept triples)",
        "generator": "who produced the triples it added: teacher or the previous student",
        "generated": "new triples that generator added", "kept": "of those, kept by every critic",
        "train_examples": "the union the round's student was trained on", "student": "its folder",
        "training_run": "training_runs.id", "evaluation": "evaluations.id", "created_at": _WHEN,
    }),
    TableDoc("claims", "Leases on request keys being sent now, so concurrent runs of a job split it.", {
        "key": "the request key being sent", "owner": "host:pid:token of the claiming process", "host": "its host",
        "pid": "its process id", "run_id": "the run it sends for",
        "expires_at": "unix time; renewed by the owner's heartbeat, free once passed",
    }),
    *schema_links.DOCS,
]  # fmt: skip

register_tables("core", MIGRATIONS, DOCS)
set_schema(Schema(check=_check_marker, migrate=migrate))
