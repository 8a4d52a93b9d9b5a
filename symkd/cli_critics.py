"""``symkd critic ...``: apply critics to the triples of a database and report what they removed.

    symkd critic apply --db run.db --critics rules,dedupe:threshold=0.8,judge:teacher=smollm2
    symkd critic report --db run.db [--run RUN_ID]

Critics run in the order given; by default each later critic only scores the triples every
earlier one kept (``--no-cascade`` scores all). Reruns score only what is not scored yet
(``--rescore`` scores again). Other modules attach commands to :data:`critic_app`
(``symkd.critics.train_cli`` adds ``critic train``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from symkd.critics.registry import split_critic_specs
from symkd.errors import UserError

critic_app = typer.Typer(
    help="Score stored triples with critics (rules, dedupe, judge, classifier) and report.",
    no_args_is_help=True,
)
#: modules that add commands to critic_app through their own register(critic_app)
PLUGINS = ["symkd.critics.train_cli"]
_KEEP = (
    "exists (select 1 from critic_scores s where s.item_table = 'triples' and s.item_id = t.id "
    "and s.critic = ? and s.critic_version = ? and s.decision = 'keep')"
)


def split_specs(values: Sequence[str]) -> list[str]:
    """``["rules,dedupe:threshold=0.8,method=embedding"]`` -> one spec per critic."""
    specs = [spec for value in values for spec in split_critic_specs(value)]
    if not specs:
        raise UserError("--critics: no critic named (e.g. --critics rules,dedupe)")
    return specs


def report_rows(store: Any, *, run: str | None = None, critics: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Per critic name+version: scored, kept, removed, mean score, estimated precision."""
    where, params = ("where t.run_id = ?", [run]) if run else ("", [])
    rows = store.query(
        "select s.critic, s.critic_version as version, count(*) as scored, "
        "sum(s.decision = 'keep') as kept, sum(s.decision = 'drop') as removed, "
        "round(avg(s.score), 4) as mean_score from critic_scores s "
        f"join triples t on s.item_table = 'triples' and t.id = s.item_id {where} "
        "group by s.critic, s.critic_version order by min(s.rowid)",
        params,
    )
    precision = {(c.name, c.version): c.estimated_precision() for c in critics}
    for row in rows:
        row["estimated_precision"] = precision.get((row["critic"], row["version"]))
    return rows


def kept_by_all(store: Any, critics: Sequence[Any], run: str | None = None) -> tuple[int, int]:
    """(triples every critic kept, triples in scope)."""
    where, params = (["t.run_id = ?"], [run]) if run else ([], [])
    total = store.scalar(f"select count(*) from triples t {'where ' + where[0] if where else ''}", params)
    for c in critics:
        where.append(_KEEP)
        params += [c.name, c.version]
    kept = store.scalar(f"select count(*) from triples t where {' and '.join(where) or '1'}", params)
    return kept, total


def _critics_in_store(store: Any) -> list[Any]:
    """Registered critics the store has scores of, built with defaults and set to the
    threshold of their latest score (what their estimated precision depends on)."""
    from symkd.critics.registry import CRITICS, critic_class

    latest = {
        (r["critic"], r["critic_version"]): r["threshold"]
        for r in store.query(
            "select critic, critic_version, threshold from critic_scores "
            "where rowid in (select max(rowid) from critic_scores group by critic, critic_version)"
        )
    }
    out = []
    for name in CRITICS:
        if not any(n == name for n, _ in latest):
            continue
        try:
            critic = critic_class(name)()
        except (UserError, ModuleNotFoundError):
            continue  # not installed here or needs options: no precision for it
        if (critic.name, critic.version) in latest and latest[(critic.name, critic.version)] is not None:
            critic.threshold = latest[(critic.name, critic.version)]
            out.append(critic)
    return out


def _table(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        for row in rows:
            typer.echo(json.dumps({c: row.get(c) for c in columns}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


COLUMNS = ["critic", "version", "scored", "kept", "removed", "mean_score", "estimated_precision"]


@critic_app.command("apply")
def apply_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database holding the triples"),
    critics: List[str] = typer.Option(..., "--critics", "-c", help="comma list of specs: rules,dedupe:threshold=0.8"),
    run: Optional[str] = typer.Option(None, "--run", help="only the triples of this generation run"),
    rescore: bool = typer.Option(False, "--rescore", help="score again what is scored already"),
    cascade: bool = typer.Option(True, "--cascade/--no-cascade", help="later critics see only kept triples"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """Apply critics in order to the triples in DB; print what each scored, kept and removed."""
    from symkd.critics.base import apply_critic
    from symkd.critics.registry import load_critic
    from symkd.store.db import Store

    built = [load_critic(spec) for spec in split_specs(critics)]
    with Store(db, create=False) as store:
        done: list[Any] = []
        passes: list[dict[str, Any]] = []
        for critic in built:
            where = ["t.run_id = ?"] if run else []
            params: list[Any] = [run] if run else []
            if cascade:
                for prev in done:
                    where.append(_KEEP)
                    params += [prev.name, prev.version]
            bind = getattr(critic, "bind", None)
            if bind is not None:
                bind(store, rescore=rescore)
            counts = apply_critic(
                store,
                critic,
                run_id=run,
                rescore=rescore,
                where=" and ".join(where) or None,
                params=params,
                progress=not quiet,
            )
            passes.append({"critic": critic.name, "version": critic.version, **counts})
            done.append(critic)
        rows = report_rows(store, run=run, critics=built)
        applied = {(c.name, c.version) for c in built}
        rows = [r for r in rows if (r["critic"], r["version"]) in applied]
        kept, total = kept_by_all(store, built, run)
    if as_json:
        _table(rows, COLUMNS, True)
        typer.echo(json.dumps({"this_pass": passes, "kept_by_all": kept, "triples": total}))
        return
    _table(rows, COLUMNS, False)
    typer.echo("this pass: " + "; ".join(f"{p['critic']} scored {p['scored']}, removed {p['dropped']}" for p in passes))
    typer.echo(f"kept by all of {', '.join(c.name for c in built)}: {kept} of {total} triples")


@critic_app.command("report")
def report_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database"),
    run: Optional[str] = typer.Option(None, "--run", help="only the triples of this generation run"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """Per critic: triples scored, kept, removed, mean score and estimated precision."""
    from symkd.store.db import Store

    with Store(db, create=False) as store:
        rows = report_rows(store, run=run, critics=_critics_in_store(store))
    if not rows and not as_json:
        typer.echo(f"{db}: no critic scores yet (symkd critic apply --db {db} --critics rules)")
        return
    _table(rows, COLUMNS, as_json)


def attach_plugins(target: typer.Typer) -> list[str]:
    """Call ``register(target)`` of each plugin module that exists; return their names."""
    attached = []
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(target)
        attached.append(name)
    return attached


_attached = False


def register(app: typer.Typer) -> None:
    """Add ``critic`` (and the commands plugins attach to it) to the main app."""
    global _attached
    if not _attached:
        attach_plugins(critic_app)
        _attached = True
    app.add_typer(critic_app, name="critic")
