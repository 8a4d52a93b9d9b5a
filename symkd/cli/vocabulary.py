"""The CLI's vocabulary, written down once: one option name per meaning.

:data:`VOCABULARY` is what an option name means in every command that has it (the README's
"CLI vocabulary" table says the same; ``tests/test_cli_vocabulary.py`` checks both, and walks
every command's options). :data:`OLD_SPELLINGS` are names that meant the same before; they
still work, unshown in ``--help``: :class:`VocabularyGroup` rewrites them to the current name
in a command that has the current name and not the old one.

Commands have one grammar: ``symkd VERB`` for the core's, ``symkd PIPELINE VERB`` for a
pipeline's (its one group). :data:`OLD_COMMANDS` are the spellings from before that; they run
the same command, unshown in ``--help`` (:func:`add_old_commands`).
"""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Optional

import typer
from typer.core import TyperGroup


@dataclass(frozen=True)
class Term:
    meaning: str
    short: Optional[str] = None  # the one short flag the name may have
    words: tuple[str, ...] = ()  # its help text names one of these (case-insensitive)


VOCABULARY: dict[str, Term] = {
    "--db": Term("the SQLite run database a command reads or writes", None, ("db", "database")),
    "--data": Term("an input data file (JSONL or TSV; see the command's help)", None, ("jsonl", "tsv")),
    "--out": Term("the file or folder a command writes", "-o", ("file", "folder", "jsonl", "json", "write")),
    "--teacher": Term("the teacher model (a teacher spec, or a local model for KD in train)", "-t", ("teacher",)),
    "--critics": Term("critics (comma list or repeatable): the ones to run, or whose verdicts select triples", None, ("critic",)),
    "--samples": Term("samples drawn per prompt, (head, relation) or task", None, ("per",)),
    "--max-steps": Term("optimizer steps of training", None, ("optimizer",)),
    "--max-agent-steps": Term("steps of one agent episode", None, ("episode",)),
    "--concurrency": Term("requests in flight", "-c", ("in flight",)),
    "--limit": Term("only the first (or a sample of) N items", None, (" n ",)),
    "--seed": Term("the random seed", None, ("seed", "reproducible")),
    "--quiet": Term("no progress output", "-q", ("progress",)),
    "--json": Term("print the result as one JSON document", None, ("json",)),
    "--rerank": Term("re-rank search hits (a flag, off by default)", None, ("re-rank",)),
    "--format": Term("the output format", "-f", ("format", "|", "csv", "json")),
}

OLD_SPELLINGS: dict[str, Optional[str]] = {
    "--critic": "--critics",
    "-c": "--critics",  # critic apply; -c is --concurrency everywhere
    "--n": "--samples",  # generate
    "--sample": "--preview-nodes",  # export (html preview)
    "--max-steps": "--max-agent-steps",  # agent generate/eval/self-train/eval-gsm8k
    "--teacher-model": "--teacher",  # train (KD teacher)
    "--gen-n-threads": "--gen-threads",  # agent self-train
    "--no-quiet": None,  # dropped: the flags are off by default
    "--no-json": None,
    "--no-rerank": None,
}


#: old command -> the current one (``symkd PIPELINE VERB``); both run the same command
OLD_COMMANDS: dict[str, str] = {
    "distill commonsense": "commonsense distill",
    "eval commonsense": "commonsense eval",
    "eval gsm8k": "agent eval-gsm8k",
    "critic train": "commonsense train-critic",
    "corpus index": "agent index-corpus",
}

#: groups that hold only old spellings now (hidden, as their commands are)
OLD_GROUPS = ("distill", "eval", "corpus")


def old_groups(app: typer.Typer) -> dict[str, typer.Typer]:
    """Add the hidden :data:`OLD_GROUPS` to ``app``; name -> group (their help names the new spellings)."""
    groups = {}
    for name in OLD_GROUPS:
        moved = "; ".join(f"symkd {old} is now symkd {new}" for old, new in OLD_COMMANDS.items() if old.split()[0] == name)
        groups[name] = typer.Typer(help=f"Old spellings, kept for scripts: {moved}.", no_args_is_help=True)
        app.add_typer(groups[name], name=name, hidden=True)
    return groups


def _command_info(app: typer.Typer, path: list[str]) -> Any:
    """The typer CommandInfo at ``path`` (group names, then the command's) under ``app``, or None."""
    for info in app.registered_groups:
        if path[1:] and info.name == path[0] and info.typer_instance is not None:
            return _command_info(info.typer_instance, path[1:])
    for info in app.registered_commands:
        if len(path) == 1 and (info.name or info.callback.__name__.replace("_", "-")) == path[0]:
            return info
    return None


def add_old_commands(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Each of :data:`OLD_COMMANDS` into ``groups[its group]``: the current command under its old
    name, hidden (its help says the new spelling). One whose current command is missing is left out."""
    for old, new in OLD_COMMANDS.items():
        group, name = old.split()
        info = _command_info(app, new.split())
        if info is None or group not in groups:
            continue
        alias = copy.copy(info)
        alias.name, alias.hidden = name, True
        doc = info.help or inspect.getdoc(info.callback) or ""
        alias.help = f"{doc}\n\nOld spelling of `symkd {new}`."
        groups[group].registered_commands.append(alias)


def option_names(command: Any) -> set[str]:
    """Every flag spelling a click command declares."""
    return {n for p in command.params for n in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))}


def _renames(command: Any) -> dict[str, Optional[str]]:
    names = option_names(command)
    current = {old: new for old, new in OLD_SPELLINGS.items() if old not in names}
    return {old: new for old, new in current.items() if (new or "--" + old[len("--no-"):]) in names}


def _rewrite(args: list[str], renames: dict[str, Optional[str]]) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if name in renames:
            if renames[name] is not None:
                out.append(renames[name] + eq + value)
            continue
        out.append(arg)
    return out


def _parse_args(parse: Any, renames: dict[str, Optional[str]], ctx: Any, args: list[str]) -> Any:
    return parse(ctx, _rewrite(list(args), renames))


def _without_type(option: Any) -> Any:
    """A flag's help row shows no type (typer would show ``<bool>``)."""
    if option is not None and getattr(option, "is_flag", False) and option.metavar is None:
        option.metavar = ""
    return option


def _help_option(get: Any, ctx: Any) -> Any:
    return _without_type(get(ctx))


def apply_vocabulary(command: Any) -> None:
    """Every command under ``command``: :data:`OLD_SPELLINGS` read as their current names,
    flags shown without a type."""
    for sub in getattr(command, "commands", {}).values():
        apply_vocabulary(sub)
    for param in command.params:
        _without_type(param)
    command.get_help_option = functools.partial(_help_option, command.get_help_option)
    renames = {} if hasattr(command, "commands") else _renames(command)
    if renames:
        command.parse_args = functools.partial(_parse_args, command.parse_args, renames)


class VocabularyGroup(TyperGroup):
    """The root group: applies :func:`apply_vocabulary` to the whole tree."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        apply_vocabulary(self)
