"""One grammar: ``symkd VERB`` for the core's commands, ``symkd PIPELINE VERB`` for a pipeline's.

The spellings from before (:data:`symkd.cli.vocabulary.OLD_COMMANDS`) run the same command and
are not shown in ``--help``.
"""

from __future__ import annotations

import json

import pytest
import typer

from symkd.cli import app
from symkd.cli.lazy import COMMANDS
from symkd.cli.vocabulary import OLD_COMMANDS, OLD_GROUPS
from tests.procs import run_cli

PIPELINES = {
    "commonsense": {"distill", "eval", "train-critic"},
    "agent": {"generate", "export", "export-cot", "train", "self-train", "eval", "eval-gsm8k", "index-corpus"},
    "strategies": {"learn", "show", "export", "import"},
}


def _root():
    return typer.main.get_command(app)


def _resolve(path: str):
    command = _root()
    for name in path.split():
        command = command.commands[name]
    return command


def _shown(command) -> set[str]:
    return {name for name, sub in command.commands.items() if not sub.hidden}


@pytest.mark.parametrize("old", sorted(OLD_COMMANDS))
def test_an_old_spelling_is_the_same_command_hidden(old):
    new = OLD_COMMANDS[old]
    then, now = _resolve(old), _resolve(new)
    assert then.hidden and not now.hidden
    assert then.callback.__wrapped__ is now.callback.__wrapped__  # the same function behind both
    assert [p.opts for p in then.params] == [p.opts for p in now.params]
    assert f"symkd {new}" in then.help


def test_each_pipeline_is_one_group_and_help_shows_only_the_new_spellings(capsys):
    root = _root()
    for pipeline, verbs in PIPELINES.items():
        assert _shown(root.commands[pipeline]) == verbs
    assert set(OLD_GROUPS) <= set(root.commands) and not set(OLD_GROUPS) & set(COMMANDS)
    assert all(root.commands[name].hidden for name in OLD_GROUPS)
    assert "train" not in _shown(root.commands["critic"])

    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    listed = {line.split()[1] for line in out.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert set(PIPELINES) <= listed and not listed & set(OLD_GROUPS)
    assert "commonsense distill" in out and "distill commonsense" not in out
    code, out, _ = run_cli(capsys, "critic", "--help")
    assert code == 0 and "apply" in out and "train" not in out


def test_old_and_new_spellings_run_the_same_command(capsys, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"apples cost {i} dollars"}) + "\n" for i in range(3)))
    outs = []
    for args in (["agent", "index-corpus"], ["corpus", "index"]):
        db = tmp_path / f"{args[0]}.db"
        code, out, err = run_cli(capsys, *args, str(docs), "--db", str(db))
        assert code == 0, err
        outs.append(out.replace(str(db), "DB"))
    assert outs[0] == outs[1] and "3 new of 3" in outs[0]

    missing = str(tmp_path / "missing.tsv")
    errors = []
    for old, new in OLD_COMMANDS.items():
        if old.startswith("eval "):  # a missing data file: the same one-line error either way
            results = [run_cli(capsys, *spelling.split(), "--teacher", "smollm2", "--data", missing) for spelling in (old, new)]
            assert results[0] == results[1] and results[0][0] == 2, (old, results)
            errors.append(results[0][2])
    assert len(errors) == 2
