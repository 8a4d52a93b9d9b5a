"""Run bookkeeping: a run is one distinct job, identified by a hash of its configuration.

Running the same job again (same kind, teacher, inputs and parameters) reopens the same run
row and counts another attempt, so a killed run is resumed rather than duplicated.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Sequence

from symkd._version import __version__
from symkd.errors import UserError
from symkd.store.claims import LEASE_S, holder_gone
from symkd.store.db import Store, to_json, utcnow
from symkd.teachers.messages import canonical_json


def run_fingerprint(kind: str, teacher: dict[str, Any], config: dict[str, Any], keys: Sequence[str]) -> str:
    items = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    identity = {"kind": kind, "backend": teacher.get("backend"), "model": teacher.get("model")}
    payload = canonical_json({"identity": identity, "config": config, "items": items})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def open_run(
    store: Store,
    run_id: str,
    *,
    kind: str,
    teacher: dict[str, Any],
    config: dict[str, Any],
    templates: list[dict[str, str]],
    owner: Any = None,
) -> dict:
    """Create the run row, or reopen it (status back to running, attempts + 1).

    ``owner`` (a :class:`symkd.store.claims.Owner`) is recorded with a first heartbeat, so a
    run whose process died can be told from one still going.
    """
    now = utcnow()
    alive = {"host": owner.host, "pid": owner.pid, "heartbeat_at": time.time()} if owner is not None else {}
    with store.transaction():
        existing = store.conn.execute("select attempts from runs where id = ?", (run_id,)).fetchone()
        if existing:
            _update(store, run_id, {"status": "running", "updated_at": now, "attempts": existing[0] + 1, **alive})
        else:
            _insert(
                store,
                {
                    "id": run_id,
                    "kind": kind,
                    "status": "running",
                    "teacher": f"{teacher.get('backend')}:{teacher.get('model')}",
                    "backend": teacher.get("backend"),
                    "model": teacher.get("model"),
                    "config": to_json({"teacher": teacher, **config}),
                    "templates": to_json(templates),
                    "symkd_version": __version__,
                    "created_at": now,
                    "updated_at": now,
                    "finished_at": None,
                    "attempts": 1,
                    **alive,
                },
            )
    return get_run(store, run_id)


def beat(store: Store, run_id: str, owner: Any) -> None:
    """The run's heartbeat: its process is alive (stale heartbeats read as ``interrupted``)."""
    with store.transaction():
        store.conn.execute("update runs set heartbeat_at = ?, host = ?, pid = ? where id = ?",
                           (time.time(), owner.host, owner.pid, run_id))  # fmt: skip


def finish_run(store: Store, run_id: str, status: str) -> None:
    now = utcnow()
    with store.transaction():
        _update(store, run_id, {"status": status, "updated_at": now, "finished_at": now})


def _insert(store: Store, row: dict[str, Any]) -> None:
    """A new ``runs`` row (plain SQL: recording a run must not load sqlite-utils; see Store.db)."""
    names = ", ".join(row)
    store.conn.execute(f"insert into runs ({names}) values ({', '.join('?' * len(row))})", list(row.values()))


def _update(store: Store, run_id: str, values: dict[str, Any]) -> None:
    sets = ", ".join(f"{name} = ?" for name in values)
    store.conn.execute(f"update runs set {sets} where id = ?", [*values.values(), run_id])


def get_run(store: Store, run_id: str) -> dict:
    rows = store.query("select * from runs where id = ?", (run_id,))
    if not rows:
        raise UserError(f"{store.path}: no run {run_id!r}")
    row = rows[0]
    row["config"] = json.loads(row["config"] or "{}")
    row["templates"] = json.loads(row["templates"] or "[]")
    return row


def list_runs(store: Store) -> list[dict]:
    """Every run with item counts: total, answered ok, failed, pending.

    A ``running`` run whose process is gone (its pid no longer exists on this host, or its
    heartbeat is older than two leases) is shown as ``interrupted``: killed with -9, or its
    machine went down. Read-only: nothing is written (works on read-only files).
    """
    if not store.db["runs"].exists():
        return []
    columns = store.db["runs"].columns_dict
    alive = "r.host, r.pid, r.heartbeat_at" if "heartbeat_at" in columns else "null as host, null as pid, null as heartbeat_at"
    rows = store.query(
        f"""
        select r.id, r.kind, r.status, r.teacher, r.created_at, r.finished_at, r.attempts, {alive},
               count(i.item_id) as items,
               sum(case when s.status = 'ok' then 1 else 0 end) as ok,
               sum(case when s.status = 'failed' then 1 else 0 end) as failed,
               sum(case when i.item_id is not null and s.status is null then 1 else 0 end) as pending
        from runs r
        left join run_items i on i.run_id = r.id
        left join responses s on s.key = i.request_key
        group by r.id
        order by r.created_at
        """
    )
    now = time.time()
    for row in rows:
        host, pid, beat_at = row.pop("host"), row.pop("pid"), row.pop("heartbeat_at")
        if row["status"] == "running" and beat_at is not None:
            if holder_gone(host, pid, beat_at + 2 * LEASE_S, now):
                row["status"] = "interrupted"
    return rows


def open_scoring_run(store: Store, kind: str, scorer: dict[str, Any], scope: dict[str, Any]) -> str:
    """Open (or reopen) the run that records a scoring pass; return its id.

    ``scorer`` is what the critic records about itself (name, version, threshold, ...) and
    ``scope`` which items it scores; the same pass run again reopens the same run. Its
    ``teacher`` reads ``critic:<name>``.
    """
    params = scope.get("params") or []
    shown = to_json(params)
    if len(shown) > 1000:  # a long id list: its digest identifies it
        scope = {**scope, "params": {"sha256": hashlib.sha256(shown.encode()).hexdigest(), "count": len(params)}}
    teacher = {"backend": "critic", "model": str(scorer.get("name"))}
    config = {"critic": scorer, "scope": scope}
    run_id = run_fingerprint(kind, teacher, config, [])
    open_run(store, run_id, kind=kind, teacher=teacher, config=config, templates=[])
    return run_id
