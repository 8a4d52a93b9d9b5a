"""The CLI starts without its heavy imports (the mechanism; the timings are bench/cli_startup.py's).

``symkd --help``, ``--version`` and a completion of a command's name load no command module;
a command loads its own module only. :data:`symkd.cli.lazy.COMMANDS` (what help and completion
list before anything is loaded) matches the commands themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from tests.procs import ROOT

HEAVY = ("torch", "transformers", "sqlite_utils", "pyarrow", "pandas", "networkx", "numpy", "datasets", "aiohttp", "jinja2")
# the command modules and what they drive: none is needed to list the commands
COMMAND_MODULES = ("symkd.cli.core", "symkd.cli.critics", "symkd.cli.graphs", "symkd.cli.students", "symkd.sandbox",
                   "symkd.pipelines.", "symkd.store", "symkd.generation", "symkd.students", "symkd.teachers", "symkd.critics")  # fmt: skip

_RUN = """
import json, sys
sys.argv = ["symkd", *json.loads(sys.argv[1])]
from symkd.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""


def _start(*args: str, env: dict | None = None) -> tuple[str, list[str]]:
    """(stdout, the modules loaded) of ``symkd ARGS`` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _RUN, json.dumps(args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200", **(env or {})}, timeout=120, check=False)  # fmt: skip
    assert "MODULES " in done.stderr, done.stderr
    return done.stdout, json.loads(done.stderr.rsplit("MODULES ", 1)[1])


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(n if n.endswith(".") else n + ".") for n in names)]


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--version",), ()])
def test_help_and_version_load_no_command_module(args):
    out, modules = _start(*args)
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, COMMAND_MODULES) == []
    if args and args[0] != "--version":
        from symkd.cli.lazy import COMMANDS

        listed = [line.split()[1] for line in out.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
        assert [name for name in listed if name in COMMANDS] == list(COMMANDS)


def test_completion_of_a_command_name_loads_no_command_module():
    env = {"_SYMKD_COMPLETE": "complete_bash", "COMP_WORDS": "symkd ge", "COMP_CWORD": "1"}
    out, modules = _start(env=env)
    assert out.split() == ["generate"]
    assert _loaded(modules, HEAVY) == []
    assert _loaded(modules, COMMAND_MODULES) == []


def test_completion_of_options_loads_that_command():
    env = {"_SYMKD_COMPLETE": "complete_bash", "COMP_WORDS": "symkd generate --te", "COMP_CWORD": "2"}
    out, _ = _start(env=env)
    assert set(out.split()) == {"--teacher", "--temperature"}


def test_a_command_loads_its_own_module_only():
    out, modules = _start("generate", "--help")
    assert "--teacher" in out
    assert "symkd.cli.core" in modules
    assert _loaded(modules, ("symkd.cli.critics", "symkd.cli.students", "symkd.cli.graphs", "symkd.pipelines.",
                             "symkd.students", "torch", "transformers", "networkx", "pyarrow")) == []  # fmt: skip


def test_the_listing_matches_the_commands():
    """Every top-level command, in help's order, with its own one-line help, and nothing else;
    the hidden ones are the groups of old spellings only."""
    from symkd.cli import app
    from symkd.cli.lazy import COMMANDS
    from symkd.cli.vocabulary import OLD_GROUPS

    root = typer.main.get_command(app)
    real = {name: (command.help or "").split("\n\n")[0].strip() for name, command in root.commands.items() if not command.hidden}
    assert list(real) == list(COMMANDS)
    assert real == {name: help_ for name, (_, help_) in COMMANDS.items()}
    assert sorted(name for name, command in root.commands.items() if command.hidden) == sorted(OLD_GROUPS)


def test_a_cached_replay_of_plain_prompts_imports_no_numpy_jinja2_or_sqlite_utils(fake_openai, tmp_path):
    """A rerun whose answers are all stored loads neither sqlite_utils (plain SQL reads the cache
    and records the run) nor numpy, jinja2 / yaml (only templates need them), and sends nothing;
    the run is recorded all the same."""
    from tests.procs import generate_args, run, write_prompts

    prompts = write_prompts(tmp_path / "p.jsonl", 5)
    args = generate_args(fake_openai.base_url, prompts, tmp_path / "run.db", "--json")
    first = run(*args)
    assert first.returncode == 0, first.stderr
    sent = fake_openai.stats()["total"]
    out, modules = _start(*args)
    assert json.loads(out)["cached"] == 5
    assert fake_openai.stats()["total"] == sent
    assert "symkd.generation" in modules
    assert _loaded(modules, ("sqlite_utils", "numpy", "pandas", "jinja2", "yaml")) == []
    runs = run("runs", "--db", str(tmp_path / "run.db"), "--json")
    assert runs.returncode == 0, runs.stderr
    [recorded] = json.loads(runs.stdout)  # the same run, reopened and finished again
    assert (recorded["status"], recorded["attempts"]) == ("done", 2)


def test_generate_help_does_not_load_the_teacher_backends():
    """symkd.teachers loads its names lazily: the options' module alone brings no asyncio or backend."""
    _, modules = _start("generate", "--help")
    assert "symkd.teachers.options" in modules
    assert _loaded(modules, ("symkd.teachers.base", "symkd.teachers.registry", "symkd.teachers.openai_api")) == []
