"""``symkd critic ...``: apply critics to the triples of a database and report what they removed.

    symkd critic apply --db run.db --critics rules,dedupe:threshold=0.8,judge:teacher=smollm2
    symkd critic report --db run.db [--run RUN_ID]

Critics run in the order given; by default each later critic only scores the triples every
earlier one kept (``--no-cascade`` scores all). Reruns score only what is not scored yet
(``--rescore`` scores again). A pipeline's own critic commands are in its group
(``symkd commonsense train-critic``; ``critic train`` is its old spelling).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Sequence

import typer

from symkd.commandline import model_options
from symkd.errors import UserError
from symkd.scale.options import ExecutorOptions

critic_app = typer.Typer(
    help="Score stored triples with critics (rules, dedupe, judge, classifier) and report.",
    no_args_is_help=True,
)


def split_specs(values: Sequence[str]) -> list[str]:
    """``["rules,dedupe:threshold=0.8,method=embedding"]`` -> one spec per critic."""
    from symkd.critics.registry import split_critic_specs  # imports the store: only when a command runs

    specs = [spec for value in values for spec in split_critic_specs(value)]
    if not specs:
        raise UserError("--critics: no critic named (e.g. --critics rules,dedupe)")
    return specs


def _critics_in_store(store: Any) -> list[Any]:
    """Registered critics the store has scores of, built with defaults and set to the
    threshold of their latest score (what their estimated precision depends on)."""
    from symkd.critics.registry import critic_class, critic_names

    latest = {
        (r["critic"], r["critic_version"]): r["threshold"]
        for r in store.query(
            "select critic, critic_version, threshold from critic_scores "
            "where rowid in (select max(rowid) from critic_scores group by critic, critic_version)"
        )
    }
    out = []
    for name in critic_names():
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
    if as_json:  # one JSON document: a list of rows
        typer.echo(json.dumps([{c: row.get(c) for c in columns} for row in rows]))
        return
    from symkd.commandline import console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console().print(table)


COLUMNS = ["critic", "version", "scored", "kept", "removed", "new_scores", "mean_score", "estimated_precision"]


@critic_app.command("apply")
@model_options(ExecutorOptions, "executor_options")
def apply_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database holding the triples"),
    critics: List[str] = typer.Option(..., "--critics", help="comma list of critic specs: rules,dedupe:threshold=0.8"),
    run: Optional[str] = typer.Option(None, "--run", help="only the triples of this generation run"),
    rescore: bool = typer.Option(False, "--rescore", help="score again what is scored already"),
    cascade: bool = typer.Option(True, "--cascade/--no-cascade", help="later critics see only kept triples"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
    executor_options: Any = None,
) -> None:
    """Apply critics in order to the triples in DB; print what each scored, kept and removed."""
    from symkd.critics.cascade import apply_cascade, report_rows
    from symkd.critics.registry import load_critic
    from symkd.scale import executor_scope
    from symkd.store.db import Store

    built = [load_critic(spec) for spec in split_specs(critics)]
    with Store(db, create=False) as store, executor_scope(executor_options):  # --executor ray: batches in actors
        result = apply_cascade(store, built, where="t.run_id = ?" if run else None, params=[run] if run else [],
                               cascade=cascade, rescore=rescore, run_id=run, progress=not quiet)  # fmt: skip
        rows = {(r["critic"], r["version"]): r for r in report_rows(store, run=run, critics=built)}
    table = [{**row, "mean_score": rows.get((row["critic"], row["version"]), {}).get("mean_score")} for row in result["critics"]]
    if as_json:  # one JSON document
        typer.echo(json.dumps({"critics": [{c: row.get(c) for c in COLUMNS} for row in table], "this_pass": result["this_pass"],
                               "kept_by_all": result["kept"], "triples": result["triples"]}))  # fmt: skip
        return
    _table(table, COLUMNS, False)
    typer.echo("this pass: " + "; ".join(f"{p['critic']} scored {p['scored']}, removed {p['dropped']}" for p in result["this_pass"]))
    typer.echo(f"kept by all of {', '.join(c.name for c in built)}: {result['kept']} of {result['triples']} triples")


@critic_app.command("report")
def report_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database"),
    run: Optional[str] = typer.Option(None, "--run", help="only the triples of this generation run"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON document"),
) -> None:
    """Per critic: triples scored, kept, removed, mean score and estimated precision."""
    from symkd.critics.cascade import report_rows
    from symkd.store.db import Store

    with Store(db, create=False) as store:
        rows = report_rows(store, run=run, critics=_critics_in_store(store))
    if not rows and not as_json:
        typer.echo(f"{db}: no critic scores yet (symkd critic apply --db {db} --critics rules)")
        return
    _table(rows, COLUMNS, as_json)


def register(app: typer.Typer) -> None:
    """Add ``critic`` to the main app; pipelines add their own critic commands to :data:`critic_app`."""
    app.add_typer(critic_app, name="critic")
