"""``symkd --version``, ``-h`` on every command, and ``--json`` as one JSON document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import pytest
import typer

from symkd.cli import app
from symkd.graphs.triples import add_triples
from symkd.store.db import Store
from tests.procs import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]




def _command_paths(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the app, as the words that name it."""
    paths = [path]
    for name, command in getattr(group, "commands", {}).items():
        paths += _command_paths(command, (*path, name))
    return paths


def test_version_is_the_packages(capsys):
    import importlib.metadata

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["version"]["path"] == "symkd/_version.py"
    source = (ROOT / "symkd" / "_version.py").read_text()
    version = source.split('__version__ = "', 1)[1].split('"', 1)[0]
    assert importlib.metadata.version("symkd") == version  # what pip installed is what the file says
    code, out, err = run_cli(capsys, "--version")
    assert (code, out, err) == (0, f"symkd {version}\n", "")


def test_dash_h_is_help_on_the_root_and_every_subcommand(capsys):
    paths = _command_paths(typer.main.get_command(app))
    assert {("runs",), ("critic", "report"), ("distill", "commonsense"), ("teachers",)} <= set(paths)
    for path in paths:
        short = run_cli(capsys, *path, "-h")
        assert short == run_cli(capsys, *path, "--help"), path
        assert short[0] == 0 and "Usage:" in short[1], (path, short[2])


def test_unknown_option_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(capsys, "runs", "--jsn")
    assert code == 2 and out == "" and "--jsn" in err


def test_listings_print_one_json_document(capsys):
    code, out, _ = run_cli(capsys, "teachers", "--json")
    backends = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and {"openai", "smollm2"} <= set(backends) and backends["openai"]["installed"] is True
    code, out, _ = run_cli(capsys, "templates", "--json")
    templates = {row["id"]: row for row in json.loads(out)}
    assert code == 0 and templates["quickstart/explain"]["variables"] == ["concept"]
    code, out, _ = run_cli(capsys, "plugins", "--json")
    kinds = json.loads(out)
    assert code == 0 and set(kinds) == {"teachers", "critics", "losses", "pipelines"}
    assert "rules" in kinds["critics"] and "openai" in kinds["teachers"] and "commonsense" in kinds["pipelines"]


def test_runs_json_is_one_list(capsys, tmp_path, fake_openai):
    import symkd

    db = tmp_path / "r.db"
    Store(db).close()
    code, out, _ = run_cli(capsys, "runs", "--db", str(db), "--json")
    assert code == 0 and json.loads(out) == []
    chat = [symkd.Request(id=f"q{i}", prompt=f"line {i}") for i in range(3)]
    for config in ({"n": 1}, {"n": 2}):  # two runs
        symkd.generate("openai:fake", chat, db, base_url=fake_openai.base_url, config=config, progress=False)
    code, out, _ = run_cli(capsys, "runs", "--db", str(db), "--json")
    runs = json.loads(out)
    assert code == 0 and len(runs) == 2 and all((r["items"], r["ok"], r["status"]) == (3, 3, "done") for r in runs)


def test_critic_apply_and_report_json_are_one_document(capsys, tmp_path):
    db = tmp_path / "t.db"
    with Store(db) as store:
        add_triples(store, [{"head": "PersonX goes jogging", "relation": "xWant", "tail": t}
                            for t in ("to rest", "rest", "I'm sorry, as an AI", "to drink water")])  # fmt: skip
    code, out, err = run_cli(capsys, "critic", "apply", "--db", str(db), "--critics", "rules,dedupe", "-q", "--json")
    applied = json.loads(out)
    assert code == 0, err
    assert [c["critic"] for c in applied["critics"]] == ["rules", "dedupe"]
    assert (applied["kept_by_all"], applied["triples"]) == (2, 4)
    code, out, _ = run_cli(capsys, "critic", "report", "--db", str(db), "--json")
    report = {row["critic"]: row for row in json.loads(out)}
    assert code == 0 and report["rules"]["removed"] == 1 and report["dedupe"]["removed"] == 1
