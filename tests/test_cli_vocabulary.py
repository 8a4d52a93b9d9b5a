"""One CLI vocabulary: every command's options, walked through the app, checked against
:data:`symkd.cli.vocabulary.VOCABULARY` (and the README's table of it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from symkd.cli import app
from symkd.cli.vocabulary import OLD_SPELLINGS, VOCABULARY, VocabularyGroup
from symkd.store.db import Store
from tests.procs import run_cli

ROOT = Path(__file__).resolve().parents[1]
LISTINGS = {("teachers",), ("templates",), ("plugins",), ("runs",), ("critic", "report")}


def _commands(command, path: tuple[str, ...] = ()):
    """(words, command) for the root, every group and every command under ``command``."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _options(command) -> list:
    return [p for p in command.params if type(p).__name__.endswith("Option") and not p.hidden]


def _names(option) -> list[str]:
    return [*option.opts, *option.secondary_opts]


def _help_problems(path, command) -> list[str]:
    return [f"{' '.join(path)} {_names(o)[0]}: no help" for o in _options(command) if not (o.help or "").strip()]


def _meaning_problems(path, command) -> list[str]:
    """A vocabulary name means what the vocabulary says: its help names it, its short flag is the one."""
    shorts = {t.short: name for name, t in VOCABULARY.items() if t.short}
    problems = []
    for option in _options(command):
        names, where = _names(option), f"{' '.join(path)} {_names(option)[0]}"
        for name in (n for n in names if n in VOCABULARY):
            term = VOCABULARY[name]
            if not any(w in f" {option.help or ''} ".lower() for w in term.words):
                problems.append(f"{where}: help does not say {term.meaning!r}")
            problems += [f"{where}: {s} is not {name}'s short flag" for s in names if len(s) == 2 and s != term.short]
        problems += [f"{where}: {s} is {shorts[s]}" for s in names if s in shorts and shorts[s] not in names]
        problems += [f"{where}: old spelling {n} shown" for n in names if n in OLD_SPELLINGS and n not in VOCABULARY and n not in shorts]
    return problems


def _json_problems(path, command) -> list[str]:
    names = {n for o in _options(command) for n in _names(o)}
    reports = "--quiet" in names or path in LISTINGS
    return [f"{' '.join(path)}: reports without --json"] if reports and "--json" not in names else []


def problems(root) -> list[str]:
    found = []
    for path, command in _commands(root):
        found += _help_problems(path, command) + _meaning_problems(path, command) + _json_problems(path, command)
    return found


def test_every_command_follows_the_vocabulary():
    assert problems(typer.main.get_command(app)) == []


def test_the_walk_finds_a_command_that_breaks_it():
    bad = typer.Typer(cls=VocabularyGroup)

    @bad.command("apply")
    def apply(critics: str = typer.Option("", "--critics", "-c"), quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
        """A command that breaks every rule."""

    @bad.command("other")
    def other(steps: int = typer.Option(1, "--max-steps", help="steps per episode")) -> None:
        """--max-steps meaning agent steps."""

    found = problems(typer.main.get_command(bad))
    assert "apply --critics: no help" in found and "apply --critics: -c is --concurrency" in found
    assert "apply: reports without --json" in found and "apply --quiet: no help" in found
    assert "other --max-steps: help does not say 'optimizer steps of training'" in found


def test_help_shows_no_bool_type_on_flags(capsys):
    for path, _ in _commands(typer.main.get_command(app)):
        code, out, _ = run_cli(capsys, *path, "--help")
        assert code == 0 and "<bool>" not in out, path
    code, out, _ = run_cli(capsys, "--help")
    assert "Examples:" in out and "--json" in out


def test_readme_table_is_the_vocabulary():
    text = (ROOT / "README.md").read_text()
    section = text.split("### CLI vocabulary", 1)[1].split("\n\n", 3)[2]
    rows = re.findall(r"^\| (`.+?`) \| (.+?) \|$", section, re.M)
    table = {tuple(re.findall(r"`(.+?)`", names)): meaning for names, meaning in rows if names != "option"}
    wanted = {(name, *([t.short] if t.short else [])): t.meaning for name, t in VOCABULARY.items()}
    assert table == wanted


def test_old_spellings_still_work(capsys, tmp_path):
    missing = str(tmp_path / "missing.db")
    code, _, err = run_cli(capsys, "critic", "apply", "--db", missing, "-c", "rules")
    assert code == 2 and "no such database" in err
    code, _, err = run_cli(capsys, "stats", "--db", missing, "--critic", "rules", "--json")
    assert code == 2 and "No such option" not in err
    code, _, err = run_cli(capsys, "export", "--db", missing, "-f", "tsv", "-o", str(tmp_path / "o.tsv"), "--sample=5")
    assert code == 2 and "No such option" not in err
    code, _, err = run_cli(capsys, "agent", "eval", "--data", missing, "--max-steps", "0", "--no-quiet")
    assert code == 2 and "--max-agent-steps" in err


def test_json_is_one_document_everywhere(capsys, tmp_path):
    db = tmp_path / "r.db"
    Store(db).close()
    for args in (["teachers"], ["templates"], ["plugins"], ["runs", "--db", str(db)], ["critic", "report", "--db", str(db)]):
        code, out, err = run_cli(capsys, *args, "--json")
        assert code == 0, (args, err)
        json.loads(out)  # one document, not JSON lines
