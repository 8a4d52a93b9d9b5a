"""The ``symkd`` command line: the app, assembled from one module per command group.

Thin: parse, call the API, print.

A user error ends in one line on stderr and exit code 2; heavy libraries are imported only
by the commands (and backends) that need them.
"""

from __future__ import annotations

from symkd.interrupts import quiet_startup

_starting = quiet_startup()  # Ctrl-C while the commands load: the one line, not a traceback

import signal  # noqa: E402
import sys  # noqa: E402

import typer  # noqa: E402

from symkd.errors import UserError  # noqa: E402

from symkd.cli import lazy  # noqa: E402

EXAMPLES = """Examples:

    symkd generate -t smollm2 -p prompts.jsonl --db run.db --samples 2

    symkd commonsense distill -t smollm2 --db run.db --n-events 50

    symkd train --db run.db --critics rules,dedupe -o students/s1 --json

    symkd runs --db run.db --json | python -m json.tool

Core commands: symkd VERB; a pipeline's: symkd PIPELINE VERB (commonsense, agent, strategies).
One name per meaning in every command: see "CLI vocabulary" in the README."""

app = typer.Typer(
    cls=lazy.LazyRootGroup,  # commands load when used; old spellings of renamed options still work, unshown
    help="symkd: distill teacher LLMs into symbolic knowledge, agent trajectories and strategies.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # every subcommand inherits -h
)


def _register_commands(holder: typer.Typer) -> None:
    """The core's commands (one module each), then every pipeline's one group (``symkd PIPELINE
    VERB``), found through :data:`symkd.pipelines.REGISTRY` (built-ins and entry points alike),
    then the old spellings (:data:`symkd.cli.vocabulary.OLD_COMMANDS`, hidden). The root group
    (:class:`symkd.cli.lazy.LazyRootGroup`) calls this only when a command needs them all."""
    from symkd.cli import core, critics, graphs, students
    from symkd.cli.vocabulary import add_old_commands, old_groups
    from symkd.pipelines import REGISTRY

    from symkd.sandbox import cli as sandbox

    for module in (core, critics, graphs, students, sandbox):
        module.register(holder)
    groups = {**old_groups(holder), "critic": critics.critic_app}  # a pipeline of another package may still add to these
    for name in REGISTRY.names():
        REGISTRY.load(name)(holder, groups)
    add_old_commands(holder, groups)


def _show_version(value: bool) -> None:
    if value:
        from symkd import __version__

        typer.echo(f"symkd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    adopt: bool = typer.Option(False, "--adopt", help="let any command add symkd's tables to a SQLite file that is not a symkd database"),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="print the version and exit"),
) -> None:
    """symkd: distill teacher LLMs into symbolic knowledge, agent trajectories and strategies."""
    if adopt:
        from symkd.store.db import set_adopt_default

        set_adopt_default(True)


lazy._register_all.append(_register_commands)
_starting()


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM outside a run's event loop: stop like Ctrl-C (a run's loop handles its own)."""
    from symkd.interrupts import Interrupted, received

    received.append(signum)
    raise Interrupted(signum)


def _interrupted() -> None:
    """The one line for Ctrl-C / SIGTERM, and the shell's exit code for that signal."""
    from symkd.interrupts import received

    typer.echo("symkd: interrupted, rerun the same command to resume", err=True)
    sys.exit(128 + (received[-1] if received else signal.SIGINT))


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2; Ctrl-C one line and 130."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _main(argv)
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _completion() -> None:
    """Shell completion (``_SYMKD_COMPLETE=complete_bash|complete_zsh|complete_fish ...``) answers
    although the app adds no ``--install-completion``: the shells are registered when asked."""
    import os

    if any(key.endswith("_COMPLETE") and key.startswith("_") for key in os.environ):
        from typer.completion import completion_init

        completion_init()


def _main(argv: list[str] | None) -> None:
    _completion()
    try:
        rc = app(args=argv, standalone_mode=False)
    except UserError as exc:
        typer.echo(f"symkd: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
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
    except BaseException as exc:  # noqa: B036
        from symkd.interrupts import received

        if type(exc).__name__ == "CancelledError" and received:  # a signal's cancel that landed late
            _interrupted()
        raise
    if rc == 130:  # typer's non-standalone mode returns 130 for a KeyboardInterrupt it caught
        _interrupted()
    if isinstance(rc, int) and rc:
        sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    main()
