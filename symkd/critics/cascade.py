"""Critics applied in order over a store's triples, and the report of what each removed.

The items are the rows of ``item_table`` (default :data:`symkd.graphs.triples.TRIPLE_TABLE`,
the generic triple model's table); each critic scores that table, or says which it scores.

The one implementation behind ``symkd commonsense distill`` and ``symkd critic apply``: with
``cascade`` each later critic scores only the triples every earlier one kept; the report
gives, per critic name+version, the triples scored, kept and removed in scope, this pass's
new scores, and the estimated precision where the critic knows it.
"""

from __future__ import annotations

from typing import Any, Sequence

from symkd.critics.base import Critic, apply_critic, declare_table
from symkd.graphs.triples import TRIPLE_TABLE
from symkd.store.db import Store

KEPT_BY = (
    "exists (select 1 from critic_scores s where s.item_table = ? and s.item_id = t.id "
    "and s.critic = ? and s.critic_version = ? and s.decision = 'keep')"
)
COLUMNS = ["critic", "version", "threshold", "scored", "kept", "removed", "new_scores", "estimated_precision"]


def apply_cascade(
    store: Store,
    critics: Sequence[Critic],
    *,
    where: str | None = None,
    params: Sequence[Any] = (),
    cascade: bool = True,
    rescore: bool = False,
    run_id: str | None = None,
    progress: bool = False,
    item_table: str = TRIPLE_TABLE,
) -> dict[str, Any]:
    """Apply ``critics`` in order to the triples matching ``where``; return the report.

    Each critic's new scores record the run that scored them (one ``critic`` run per critic
    and scope, see :func:`~symkd.critics.base.apply_critic`). ``run_id`` (the CLI's ``--run``)
    names the generation run the scope is limited to: it is part of ``where``/``params``, hence
    of each scoring run's recorded scope, and is no longer written on the scores themselves.
    ``item_table``: the table scored (every critic must score it or declare none)."""
    for critic in critics:
        declare_table(critic, item_table)
    scope = [where] if where else []
    clauses, values = list(scope), list(params)
    rows, passes = [], []
    for critic in critics:
        this_pass = apply_critic(store, critic, rescore=rescore, where=" and ".join(clauses) or None,
                                 params=values, progress=progress)  # fmt: skip
        passes.append({"critic": critic.name, "version": critic.version, **this_pass})
        rows.append(_critic_row(store, critic, clauses, values, this_pass["scored"]))
        if cascade:
            clauses.append(KEPT_BY)
            values += [item_table, critic.name, critic.version]
    return {**kept_by_all(store, critics, where=where, params=params, item_table=item_table), "critics": rows,
            "this_pass": passes}


def _critic_row(store: Store, critic: Critic, clauses: list[str], values: list[Any], new: int) -> dict[str, Any]:
    where = " and ".join(clauses) or "1"
    scored = store.query(
        "select count(*) as scored, coalesce(sum(s.decision = 'keep'), 0) as kept, "
        "coalesce(sum(s.decision = 'drop'), 0) as removed from critic_scores s "
        f"join {critic.item_table} t on s.item_table = ? and s.item_id = t.id "
        f"where s.critic = ? and s.critic_version = ? and {where}",
        [critic.item_table, critic.name, critic.version, *values],
    )[0]
    return {"critic": critic.name, "version": critic.version, "threshold": getattr(critic, "threshold", None),
            **scored, "new_scores": new, "estimated_precision": critic.estimated_precision()}  # fmt: skip


def kept_by_all(store: Store, critics: Sequence[Critic], *, where: str | None = None, params: Sequence[Any] = (),
                item_table: str = TRIPLE_TABLE) -> dict[str, Any]:  # fmt: skip
    """Items (``triples``) in scope, those every critic kept, and the last known precision estimate."""
    scope = f"where {where}" if where else ""
    total = store.scalar(f"select count(*) from {item_table} t {scope}", list(params))
    clauses, values = ([where] if where else []), list(params)
    for critic in critics:
        clauses.append(KEPT_BY)
        values += [item_table, critic.name, critic.version]
    kept = store.scalar(f"select count(*) from {item_table} t where {' and '.join(clauses) or '1'}", values)
    known = [p for p in (c.estimated_precision() for c in critics) if p is not None]
    return {"triples": total, "kept": kept, "estimated_precision": known[-1] if known else None}


def report_rows(store: Store, *, run: str | None = None, critics: Sequence[Critic] = (),
                item_table: str = TRIPLE_TABLE) -> list[dict[str, Any]]:  # fmt: skip
    """Per critic name+version over all stored scores of ``item_table``: scored, kept, removed, mean score, precision."""
    where, params = ("where t.run_id = ?", [item_table, run]) if run else ("", [item_table])
    rows = store.query(
        "select s.critic, s.critic_version as version, count(*) as scored, "
        "sum(s.decision = 'keep') as kept, sum(s.decision = 'drop') as removed, "
        "round(avg(s.score), 4) as mean_score from critic_scores s "
        f"join {item_table} t on s.item_table = ? and t.id = s.item_id {where} "
        "group by s.critic, s.critic_version order by min(s.rowid)",
        params,
    )
    precision = {(c.name, c.version): c.estimated_precision() for c in critics}
    for row in rows:
        row["estimated_precision"] = precision.get((row["critic"], row["version"]))
    return rows
