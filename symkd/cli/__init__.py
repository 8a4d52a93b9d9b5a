"""The ``symkd`` command line: the app, assembled from one module per command group.

Thin: parse, call the API, print.

A user error ends in one line on stderr and exit code 2; heavy libraries are imported only
by the commands (and backends) that need them.
"""

from __future__ import annotations

import sys

import typer

from symkd.errors import UserError

app = typer.Typer(
    help="symkd: distill teacher LLMs into symbolic knowledge, agent trajectories and strategies.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_commands() -> None:
    """The core's command groups (one module each), then every pipeline's own group, found
    through :data:`symkd.pipelines.REGISTRY` (built-ins and entry points alike)."""
    from symkd.cli import core, critics, graphs, students
    from symkd.pipelines import REGISTRY

    from symkd.sandbox import cli as sandbox

    for module in (core, critics, graphs, students, sandbox):
        module.register(app)
    distill = typer.Typer(help="Distill a teacher into knowledge (one command per pipeline).", no_args_is_help=True)
    app.add_typer(distill, name="distill")
    groups = {"distill": distill, "eval": students.eval_app, "critic": critics.critic_app}
    for name in REGISTRY.names():
        REGISTRY.load(name)(app, groups)


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
