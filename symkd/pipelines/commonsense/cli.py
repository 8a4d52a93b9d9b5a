"""``symkd commonsense distill | eval | train-critic``: events -> inferences -> critics ->
knowledge graph in SQLite; its evaluation; its MiniLM pair critic.

    symkd commonsense distill --teacher smollm2 --n-events 50 --db demo.db

Rerunning the same command answers from the cache: no teacher call, no duplicated row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from symkd.commandline import build, model_options, teacher_option
from symkd.pipelines.commonsense.config import API_ONLY, DistillConfig, EvalConfig
from symkd.scale.options import ExecutorOptions
from symkd.students.train import TrainConfig
from symkd.teachers.options import TeacherOptions


def split_critics(value: str) -> list[str]:
    """``"rules,classifier:threshold=0.7,dedupe"`` -> one spec per critic; "none" -> []."""
    from symkd.critics.registry import split_critic_specs

    return [] if value.strip().lower() in ("", "none") else split_critic_specs(value)


def _table(title: str, rows: list[dict], columns: list[str]) -> None:
    from symkd.commandline import console
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console().print(table)


def print_report(report: dict[str, Any]) -> None:
    """The counts per stage, per relation and per critic, as tables."""
    stages = [{"stage": name, **values} for name, values in report["stages"].items()]
    _table("teacher calls per stage", stages, ["stage", "requests", "done", "cached", "failed", "seconds"])
    ev, app, inf = report["events"], report["applicability"], report["inferences"]
    dropped = ", ".join(f"{k[8:]} {v}" for k, v in ev.items() if k.startswith("dropped_") and v)
    counts = [
        {"stage": "events", "count": f"generated {ev['generated']}, kept {ev['kept']}, dropped {ev['dropped']}"},
        {"stage": "events dropped", "count": dropped or "-"},
        {"stage": "entity heads", "count": f"{report['entities']['heads']} ({report['entities']['from_seeds']} from seeds)"},
        {"stage": "applicability", "count": f"rule: applies {app['rule_applies']}, none {app['rule_none']}, "
                                            f"out of scope {app['out_of_scope']}; teacher: applies {app['applies']}, "
                                            f"none {app['none']}, unclear {app['unclear']}, failed {app['failed']}"},
        {"stage": "inferences", "count": f"tails {inf['tails']} from {inf['samples']} samples; dropped fragment "
                                         f"{inf['dropped_fragment']}, stray name {inf['dropped_stray-name']}, duplicate {inf['dropped_duplicate']}, "
                                         f"constraint {inf['dropped_constraint']}; none rows {inf['none_rows']}"},
    ]  # fmt: skip
    _table("counts", counts, ["stage", "count"])
    rels = [{"relation": r, **v} for r, v in report["relations"].items()]
    _table("triples per relation", rels, ["relation", "tails", "none"])
    review = report["critics"]
    if review["critics"]:
        _table("critics (cascade)", review["critics"], ["critic", "version", "threshold", "scored", "kept", "removed", "estimated_precision"])
    if report.get("rounds"):
        rows = [{**r, **{m: (f"{r['scores'][m]:.4f}" if m in r.get("scores", {}) else "") for m in ("bleu1", "rougeL", "cider")}}
                for r in report["rounds"]]  # fmt: skip
        _table("self-imitation rounds", rows, ["round", "generator", "generated", "kept", "train_examples", "bleu1", "rougeL", "cider", "student"])
    precision = review["estimated_precision"]
    typer.echo(
        f"kept by every critic: {review['kept']} of {review['triples']} triples"
        + (f" (estimated precision {precision:.2f})" if precision is not None else "")
        + f"; {report['seconds']}s -> {report['db']}"
    )


@model_options(TrainConfig, "train_options", prefix="student-", exclude=("out", "kd_loss", "teacher_model", "kd_weight"),
               aliases={"base_model": ["--student-base"]})  # fmt: skip
@model_options(TeacherOptions, "teacher_options")
@model_options(ExecutorOptions, "executor_options")
@model_options(DistillConfig, "config", exclude=API_ONLY)
def commonsense(
    teacher: str = teacher_option(),
    db: Path = typer.Option(..., "--db", help="SQLite database (created when missing)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    config: Any = None,
    teacher_options: Any = None,
    train_options: Any = None,
    executor_options: Any = None,
) -> None:
    """Generate events, decide applicability, generate tails for ATOMIC2020 relations, apply critics.

    With --rounds, train students on the kept triples and run I2D2 self-imitation rounds."""
    from symkd.pipelines.commonsense.pipeline import distill_commonsense
    from symkd.scale import executor_scope
    from symkd.teachers.options import as_options

    settings = build(DistillConfig, {**config, "train_options": train_options})
    with executor_scope(executor_options):  # --executor ray: every stage's teacher calls and critic batches
        report = distill_commonsense(teacher, db, settings, progress=not quiet, teacher_options=as_options(teacher_options))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        print_report(report)
    failed = sum(int(stage["failed"]) for stage in report["stages"].values())
    if failed:
        typer.echo(f"{failed} teacher request(s) failed; their reasons are in the responses table. Rerun to retry.", err=True)
        raise typer.Exit(1)


@model_options(TeacherOptions, "teacher_options", exclude=("batch_size", "device"))
@model_options(EvalConfig, "config")
def eval_commonsense(
    data: Path = typer.Option(..., "--data", help="ATOMIC-format TSV: head @@ relation<TAB>tail1| tail2"),
    model: Optional[Path] = typer.Option(None, "--model", help="student folder (from symkd train)"),
    teacher: Optional[str] = teacher_option(None, role="evaluate a teacher few-shot instead"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the scores as JSON"),
    save_generations: Optional[Path] = typer.Option(None, "--save-generations", help="JSONL of {head, relation, prediction}"),
    db: Optional[Path] = typer.Option(None, "--db", help="run DB: record the scores here (and cache a teacher's answers)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    config: Any = None,
    teacher_options: Any = None,
) -> None:
    """COMET-ATOMIC2020 scores (BLEU-1..4, ROUGE-L, CIDEr), overall and per relation."""
    from symkd.pipelines.commonsense.evaluate import evaluate_commonsense

    settings = build(EvalConfig, config)
    report = evaluate_commonsense(
        data, settings, model=model, teacher=teacher, db=db, out=out, save_generations=save_generations,
        progress=not quiet, teacher_options={**teacher_options, "batch_size": settings.batch_size},
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    print_scores(report)
    if out is not None:
        typer.echo(f"-> {out}")


def print_scores(report: dict) -> None:
    from symkd.commandline import console
    from rich.table import Table

    from symkd.pipelines.commonsense.metrics import METRICS

    table = Table("relation", "lines", *METRICS, title=f"{report['model']} on {report['data']['file']} ({report['data']['split']})",
                  title_justify="left")  # fmt: skip
    counts = report["counts"]["per_relation"]
    for relation, scores in report["per_relation"].items():
        table.add_row(relation, str(counts[relation]), *(f"{scores[m]:.4f}" for m in METRICS))
    table.add_row("[bold]overall", f"[bold]{report['counts']['total']}", *(f"[bold]{report[m]:.4f}" for m in METRICS))
    console().print(table)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """The ``commonsense`` group: ``distill``, ``eval`` and ``train-critic`` (the MiniLM pair critic)."""
    from symkd.pipelines.commonsense.critics.cli import train as train_critic

    group = typer.Typer(help="Symbolic commonsense: distill ATOMIC2020 triples, evaluate a student, train the pair critic.",
                        no_args_is_help=True)  # fmt: skip
    group.command("distill")(commonsense)
    group.command("eval")(eval_commonsense)
    group.command("train-critic")(train_critic)
    app.add_typer(group, name="commonsense")
