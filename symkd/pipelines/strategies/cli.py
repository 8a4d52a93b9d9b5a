"""``symkd strategies learn | show | export | import``.

    symkd strategies learn --teacher smollm2 --data train.jsonl --rounds 2 --db lib.db
    symkd strategies show --db lib.db                      # the Markdown library
    symkd strategies export --db lib.db --format parquet --out lib.parquet
    symkd strategies import lib.md --db lib.db             # a person's edits, as new versions
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from symkd.commandline import build, model_options, teacher_option
from symkd.pipelines.strategies.options import LearnConfig
from symkd.teachers.options import TeacherOptions

strategies_app = typer.Typer(help="Learn, audit and edit a library of strategies the student retrieves.", no_args_is_help=True)


@model_options(TeacherOptions, "teacher_options")
@model_options(TeacherOptions, "student_options", prefix="student-")  # the student's own: --student-base-url ...
@model_options(LearnConfig, "learn_options")
def learn(
    teacher: str = teacher_option(),
    student: str = typer.Option("smollm2", "--student", "-s", help="student spec (same forms as --teacher)"),
    data: Path = typer.Option(..., "--data", help="JSONL of {question, answer} (GSM8K format) or chat tasks"),
    db: Path = typer.Option(..., "--db", help="SQLite database (created when missing)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    learn_options: Any = None,
    teacher_options: Any = None,
    student_options: Any = None,
) -> None:
    """Learn strategies: the student tries, the teacher writes guidance for its failures, only
    guidance that measurably helps is kept. Rerun the same command to resume."""
    from symkd.pipelines.strategies.pipeline import learn_strategies

    config = build(LearnConfig, learn_options)
    report = learn_strategies(teacher, db, config=config, data=data, student=student, teacher_options=teacher_options,
                              student_options=student_options, progress=not quiet)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print_rounds(report)
    if report.failed_requests:
        typer.echo(f"{report.failed_requests} request(s) failed; that round was not written. Rerun to retry.", err=True)
        raise typer.Exit(1)


def _print_rounds(report: Any) -> None:
    from symkd.commandline import console
    from rich.table import Table

    columns = ["round", "scenarios", "failed", "accuracy", "proposals", "critic_rejected", "accepted", "rejected",
               "merged", "synthetic", "library_size"]  # fmt: skip
    table = Table(*columns, title=f"learn {report.learn_id}", title_justify="left")
    for row in report.rounds:
        table.add_row(*(str(row[c]) for c in columns))
    console().print(table)
    rate = "-" if report.acceptance_rate is None else f"{report.acceptance_rate:.2f}"
    typer.echo(f"library: {report.library_size} strategies; acceptance rate {rate}; {report.seconds}s -> {report.db}")


def show(
    db: Path = typer.Option(..., "--db", help="database holding a strategy library"),
    format: str = typer.Option("md", "--format", "-f", help="md | json"),
) -> None:
    """Print the library (Markdown for reading, JSON for tools)."""
    from symkd.errors import UserError
    from symkd.pipelines.strategies.export import export_library

    if format == "parquet":
        raise UserError("show prints text: use `symkd strategies export --format parquet --out FILE`")
    typer.echo(export_library(db, format), nl=False)


def export(
    db: Path = typer.Option(..., "--db", help="database holding a strategy library"),
    format: str = typer.Option("md", "--format", "-f", help="md | json | parquet"),
    out: Path = typer.Option(..., "--out", "-o", help="file to write (atomically; - for standard output)"),
) -> None:
    """Write the library to a file: Markdown to audit and edit, JSON, or Parquet."""
    from symkd.pipelines.strategies.export import export_library

    from symkd.jsonio import is_stdout

    export_library(db, format, out)
    typer.echo(f"-> {out}", err=is_stdout(out))  # the library itself may be on stdout


def import_(
    file: Path = typer.Argument(..., help="an edited library: FILE.md or FILE.json"),
    db: Path = typer.Option(..., "--db", help="the database the library came from"),
) -> None:
    """Take back a person's edits: each changed strategy gets a new version (the original is kept)."""
    from symkd.pipelines.strategies.importer import import_library

    counts = import_library(file, db)
    typer.echo(f"{counts['strategies']} strategies read: {counts['changed']} changed, {counts['unchanged']} unchanged")


strategies_app.command("learn")(learn)
strategies_app.command("show")(show)
strategies_app.command("export")(export)
strategies_app.command("import")(import_)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """The ``strategies`` group."""
    app.add_typer(strategies_app, name="strategies")
