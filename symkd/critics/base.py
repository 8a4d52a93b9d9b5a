"""The critic interface and the loop that applies critics to stored items.

A critic scores items (rows of the table it or its caller declares: ``item_table``, as dicts) and says
keep or drop. :func:`apply_critics` runs critics over what a store holds, writes one
``critic_scores`` row per item and critic name+version (in short transactions, so a killed
run resumes where it stopped), each with the run that scored it, and skips items a critic
has already scored.
A new critic is one file with one class, registered in :mod:`symkd.critics.registry`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

from symkd.errors import UserError
from symkd.store.db import Store, utcnow
from symkd.store.runs import finish_run, open_scoring_run


@dataclass
class Verdict:
    """A critic's judgement of one item: higher scores are better."""

    score: float
    keep: bool
    details: dict[str, Any] = field(default_factory=dict)


class Critic(ABC):
    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    #: the store table the critic's items come from (``triples``, ``trajectories``, ...): declared by
    #: the critic, else by its caller (``apply_critic(..., item_table=...)``); no default here
    item_table: ClassVar[str | None] = None
    #: items handed to one score() call
    batch_size: ClassVar[int] = 512

    threshold: float = 0.5
    #: whether batches may be scored in other processes (symkd.scale); None: see parallel_safe
    parallel: ClassVar[bool | None] = None

    @property
    def parallel_safe(self) -> bool:
        """``parallel`` when set, else whether ``score`` of a batch depends on that batch alone:
        the class keeps no state across batches (overrides none of bind, reset, prepare)."""
        if self.parallel is not None:
            return bool(self.parallel)
        return all(getattr(type(self), hook) is getattr(Critic, hook) for hook in ("bind", "reset", "prepare"))

    def bind(self, store: Store, *, rescore: bool = False) -> None:
        """The store a pass is about to score (called before reset): critics that read earlier
        decisions (dedupe) or cache requests (judge) keep it; ``rescore`` says whether stored
        decisions of this critic are about to be replaced."""

    def reset(self) -> None:
        """Forget state kept across batches (called before each pass over a store)."""

    def prepare(self, items: Sequence[dict[str, Any]]) -> None:
        """Every item this pass will score, before the first batch: a critic that asks a
        teacher (judge) sends all its requests here, as one cached run on one session."""

    @abstractmethod
    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per item, same order. Items come in a stable order (rowid)."""

    def describe(self) -> dict[str, Any]:
        """What is recorded about this critic (never a secret)."""
        return {"name": self.name, "version": self.version, "threshold": self.threshold}

    def estimated_precision(self) -> float | None:
        """Precision of what this critic keeps, when the critic knows it (e.g. from validation)."""
        return None


def declare_table(critic: Critic, item_table: str | None) -> str:
    """The table ``critic`` scores: its own ``item_table``, else ``item_table`` (then set on it)."""
    own = critic.item_table
    if own and item_table and own != item_table:
        raise UserError(f"critic {critic.name!r} scores {own!r} items, not {item_table!r}")
    if not own:
        if not item_table:
            raise UserError(f"critic {critic.name!r} declares no item_table and none was given: which table does it score?")
        critic.item_table = item_table  # type: ignore[misc]
    return critic.item_table  # type: ignore[return-value]


def _items(store: Store, critic: Critic, *, rescore: bool, where: str | None, params: Sequence[Any]) -> Iterator[list[dict]]:
    clause = f"where ({where})" if where else ""
    if not rescore:
        join = "and" if where else "where"
        clause += (
            f" {join} not exists (select 1 from critic_scores s where s.item_table = ? and s.item_id = t.id"
            " and s.critic = ? and s.critic_version = ?)"
        )
        params = [*params, critic.item_table, critic.name, critic.version]
    sql = f"select t.* from {critic.item_table} t {clause} order by t.rowid"
    batch: list[dict] = []
    for row in store.db.query(sql, list(params)):
        batch.append(row)
        if len(batch) >= critic.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def apply_critic(
    store: Store,
    critic: Critic,
    *,
    run_id: str | None = None,
    rescore: bool = False,
    where: str | None = None,
    params: Sequence[Any] = (),
    progress: bool = False,
    executor: Any = None,
    item_table: str | None = None,
) -> dict[str, int]:
    """Score every (not yet scored) item; return counts {scored, kept, dropped}.

    Every score records ``run_id``, the run that scored: by default a run of kind ``critic``
    opened here (its config holds the critic's settings and the scope; the same pass run again
    reopens it), only when there is something to score. ``executor`` (default: the current
    one, see :mod:`symkd.scale`) may score the batches of a stateless critic in other
    processes; the scores are always written here. ``item_table``: the table to score when the
    critic declares none (a critic that declares another one is an error)."""
    declare_table(critic, item_table)
    critic.bind(store, rescore=rescore)
    critic.reset()
    counts = {"scored": 0, "kept": 0, "dropped": 0}
    # Materialise the batches first: scoring writes to the same table we read from.
    batches = list(_items(store, critic, rescore=rescore, where=where, params=params))
    if not batches:
        return counts
    own_run = run_id is None
    if own_run:
        scope = {"item_table": critic.item_table, "where": where, "params": list(params), "rescore": rescore}
        run_id = open_scoring_run(store, "critic", critic.describe(), scope)
    try:
        _score(store, critic, batches, run_id, counts, progress, executor)
    except BaseException as exc:
        if own_run:
            finish_run(store, run_id, "failed" if isinstance(exc, Exception) else "interrupted")
        raise
    if own_run:
        finish_run(store, run_id, "done")
    return counts


def _score(store: Store, critic: Critic, batches: list[list[dict]], run_id: str | None, counts: dict[str, int],
           progress: bool, executor: Any) -> None:  # fmt: skip
    bar = _bar(progress, f"critic {critic.name}", sum(len(batch) for batch in batches))
    critic.prepare([item for batch in batches for item in batch])
    from symkd.scale.critics import score_batches  # an executor scores stateless critics' batches elsewhere

    for batch, verdicts in zip(batches, score_batches(critic, batches, executor)):
        if len(verdicts) != len(batch):
            raise RuntimeError(f"critic {critic.name} returned {len(verdicts)} verdicts for {len(batch)} items")
        now = utcnow()
        rows = [
            {
                "item_table": critic.item_table,
                "item_id": item["id"],
                "critic": critic.name,
                "critic_version": critic.version,
                "score": float(v.score),
                "decision": "keep" if v.keep else "drop",
                "threshold": critic.threshold,
                "details": json.dumps(v.details, ensure_ascii=False) if v.details else None,
                "run_id": run_id,
                "created_at": now,
            }
            for item, v in zip(batch, verdicts)
        ]
        with store.transaction() as db:
            db["critic_scores"].upsert_all(rows, pk=("item_table", "item_id", "critic", "critic_version"))
        kept = sum(v.keep for v in verdicts)
        counts["scored"] += len(batch)
        counts["kept"] += kept
        counts["dropped"] += len(batch) - kept
        if bar:
            bar.update(len(batch))
    if bar:
        bar.close()


def critic_report(store: Store, critics: Sequence[Critic] | None = None) -> list[dict[str, Any]]:
    """Per critic name+version: items scored, kept, removed (all scores in the store)."""
    rows = store.query(
        """select critic, critic_version as version, item_table,
                  count(*) as scored,
                  sum(decision = 'keep') as kept,
                  sum(decision = 'drop') as removed,
                  round(avg(score), 4) as mean_score
           from critic_scores group by critic, critic_version, item_table order by critic"""
    )
    if critics:
        precision = {(c.name, c.version): c.estimated_precision() for c in critics}
        for row in rows:
            row["estimated_precision"] = precision.get((row["critic"], row["version"]))
    return rows


def _bar(enabled: bool, label: str, total: int | None):
    if not enabled:
        return None
    from symkd.progress import bar

    return bar(total=total, desc=label, unit="item")
