"""``symkd distill commonsense``: events -> inferences -> critics -> knowledge graph in SQLite.

    symkd distill commonsense --teacher smollm2 --n-events 50 --db demo.db

Rerunning the same command answers from the cache: no teacher call, no duplicated row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer


distill_app = typer.Typer(help="Distill a teacher into symbolic knowledge.", no_args_is_help=True)


def split_critics(value: str) -> list[str]:
    """``"rules,classifier:threshold=0.7,dedupe"`` -> one spec per critic; "none" -> []."""
    from symkd.critics.registry import split_critic_specs

    return [] if value.strip().lower() in ("", "none") else split_critic_specs(value)


def _table(title: str, rows: list[dict], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


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


@distill_app.command("commonsense")
def commonsense(
    teacher: str = typer.Option("smollm2", "--teacher", "-t", help="teacher spec: smollm2, openai:MODEL, hf:ID, ..."),
    db: Path = typer.Option(..., "--db", help="SQLite database (created when missing)"),
    seeds: Optional[Path] = typer.Option(None, "--seeds", help="seed file: one event (PersonX ...) or entity a line"),
    n_events: int = typer.Option(50, "--n-events", help="events to keep"),
    n_entities: Optional[int] = typer.Option(None, "--n-entities", help="entity heads taken from the events (default n-events/5)"),
    relations: str = typer.Option("all", "--relations", "-r", help="all | social | event | physical | comma list"),
    samples: int = typer.Option(2, "--samples", help="samples per (head, relation)"),
    seed: int = typer.Option(0, "--seed", help="makes the run reproducible"),
    critics: str = typer.Option("rules,dedupe,classifier", "--critics", help="comma list of critic specs, or none"),
    require: Optional[List[str]] = typer.Option(None, "--require", help="word/phrase every output must contain (repeatable)"),
    forbid: Optional[List[str]] = typer.Option(None, "--forbid", help="word/phrase no output may contain (repeatable)"),
    constrain: str = typer.Option("all", "--constrain", help="what --require/--forbid apply to: all | events | inferences"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="env var holding the API key"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", help="requests in flight (API)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="batch size (local models)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (llama.cpp)"),
    rounds: int = typer.Option(0, "--rounds", help="students to train: 1 = on the teacher's kept triples; k > 1 adds k-1 self-imitation rounds"),
    student_dir: Optional[Path] = typer.Option(None, "--student-dir", help="folder for the students (round-1, round-2, ...)"),
    student_base: str = typer.Option("smollm2", "--student-base", help="base model of the students"),
    student_epochs: float = typer.Option(3.0, "--student-epochs", help="epochs per student"),
    student_max_steps: Optional[int] = typer.Option(None, "--student-max-steps", help="optimizer steps per student (overrides epochs)"),
    student_batch_size: int = typer.Option(16, "--student-batch-size", help="training batch size"),
    student_lr: Optional[float] = typer.Option(None, "--student-lr", help="learning rate (default 5e-5; 2e-4 with LoRA)"),
    student_lora: bool = typer.Option(False, "--student-lora", help="train students with LoRA"),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="ATOMIC TSV to score every student on"),
    eval_split: str = typer.Option("eval", "--eval-split", help="all | eval | critic part of --eval-data"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Generate events, decide applicability, generate tails for ATOMIC2020 relations, apply critics.

    With --rounds, train students on the kept triples and run I2D2 self-imitation rounds."""
    from symkd.commonsense.pipeline import distill_commonsense

    report = distill_commonsense(
        teacher,
        db,
        seeds=seeds,
        n_events=n_events,
        n_entities=n_entities,
        relations=relations,
        samples_per_relation=samples,
        seed=seed,
        critics=split_critics(critics),
        require_words=tuple(require or ()),
        forbid_words=tuple(forbid or ()),
        constrain=constrain,
        progress=not quiet,
        teacher_options={"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency,
                         "batch_size": batch_size, "n_threads": threads},  # fmt: skip
        rounds=rounds,
        student_dir=student_dir,
        train_options={"base_model": student_base, "epochs": student_epochs, "max_steps": student_max_steps,
                       "batch_size": student_batch_size, "lr": student_lr, "lora": student_lora},  # fmt: skip
        eval_data=eval_data,
        eval_split=eval_split,
    )
    if as_json:
        typer.echo(json.dumps(report))
    else:
        print_report(report)
    failed = sum(int(stage["failed"]) for stage in report["stages"].values())
    if failed:
        typer.echo(f"{failed} teacher request(s) failed; their reasons are in the responses table. Rerun to retry.", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(distill_app, name="distill")
