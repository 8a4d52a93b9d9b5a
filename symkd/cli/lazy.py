"""The root command group, loaded lazily: ``symkd --help``, ``--version`` and a completion of
a command's name import none of the command modules; running a command imports only its own.

:data:`COMMANDS` names every top-level command of the built-in app, in the order ``--help``
lists them, with the part that defines it and its one-line help (``tests/test_cli_startup.py``
checks it against the commands themselves). A part is one module's ``register(app)``;
``"all"`` is every module and every pipeline (each pipeline's one group, ``symkd PIPELINE
VERB``, and the hidden old spellings, :data:`symkd.cli.vocabulary.OLD_COMMANDS`: ``critic``
holds ``critic train``). A command not listed (an old group such as ``distill``) loads
``"all"``; so does a pipeline from another package (an entry point) or one registered at run time.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, MutableMapping

import typer

from symkd.cli.vocabulary import VocabularyGroup, apply_vocabulary

# name -> (part, first paragraph of its help), in the order typer lists them (commands, then groups)
COMMANDS: dict[str, tuple[str, str]] = {
    "teachers": ("core", "List teacher backends and embedded models, and whether they are installed."),
    "templates": ("core", "List the prompt templates under prompts/ (id, version, variables)."),
    "plugins": ("core", "List what is registered by name: teacher backends, critics, KD losses, pipelines."),
    "generate": ("core", "Generate completions for a JSONL batch; resumable and cached in the DB."),
    "runs": ("core", "List the runs in a database with their counts."),
    "datasette-metadata": ("core", "Write Datasette metadata for DB (table, column and view descriptions, labels): datasette DB -m FILE."),
    "export": ("graphs", "Export the curated knowledge graph, or its triples as a dataset (written atomically)."),
    "stats": ("graphs", "Counts per relation and critic decision, degree distribution, top hubs."),
    "train": ("students", "Fine-tune a student on curated knowledge (loss on the tail tokens only)."),
    "critic": ("all", "Score stored triples with critics (rules, dedupe, judge, classifier) and report."),
    "sandbox": ("sandbox", "Run model-written Python in the OS sandbox."),
    "commonsense": ("all", "Symbolic commonsense: distill ATOMIC2020 triples, evaluate a student, train the pair critic."),
    "agent": ("all", "Agent distillation: CodeAct trajectories, students, evaluation."),
    "strategies": ("all", "Learn, audit and edit a library of strategies the student retrieves."),
}

BUILTIN_PIPELINES = ("commonsense", "agents", "strategies")

_typers: dict[str, typer.Typer] = {}  # part -> a Typer holding its commands (registered once a process)
_register_all: list[Callable[[typer.Typer], None]] = []  # set by symkd.cli: registers every command


def _part_app(part: str) -> typer.Typer:
    """The Typer holding ``part``'s commands; its module is imported on the first call."""
    if part not in _typers:
        holder = typer.Typer()
        if part == "all":
            _register_all[0](holder)
        else:
            import importlib

            module = "symkd.sandbox.cli" if part == "sandbox" else f"symkd.cli.{part}"
            importlib.import_module(module).register(holder)
        _typers[part] = holder
    return _typers[part]


def _only_builtins() -> bool:
    """No pipeline but the built-in ones (an entry point or a run-time one may add commands)."""
    from symkd.pipelines import REGISTRY

    return tuple(REGISTRY.names()) == BUILTIN_PIPELINES


def load(part: str) -> dict[str, Any]:
    """``part``'s top-level click commands by name (all of them for ``"all"``)."""
    commands = typer.main.get_group(_part_app(part)).commands
    if part != "all":
        commands = {name: command for name, command in commands.items() if COMMANDS.get(name, ("",))[0] == part}
    for command in commands.values():
        apply_vocabulary(command)  # old spellings read as the current names, as in the eager tree
    return dict(commands)


class LazyCommands(MutableMapping):
    """The root group's ``commands``: a name loads its part; walking them loads them all."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}
        self._all = False

    def _load_all(self) -> None:
        if not self._all:
            self._loaded = {**load("all"), **{k: v for k, v in self._loaded.items() if k not in COMMANDS}}
            self._all = True

    def loaded(self, name: str) -> Any:
        return self._loaded.get(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and not self._all:
            part = COMMANDS[name][0] if name in COMMANDS and _only_builtins() else "all"
            self._loaded.update(load("all") if part == "all" else load(part))
            if part == "all":
                self._all = True
        return self._loaded[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name: object) -> bool:
        return self.get(name) is not None  # type: ignore[arg-type]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._load_all()
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return iter(list(self._loaded))

    def __len__(self) -> int:
        self._load_all()
        return len(self._loaded)


class LazyRootGroup(VocabularyGroup):
    """The root group: lists its commands from :data:`COMMANDS`, loads one when it is used.

    Help and completion list a stand-in for each command not loaded yet (its name and one-line
    help); resolving a command to run it, or to complete its own options, loads the real one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        given = dict(self.commands)
        self.commands = LazyCommands()  # type: ignore[assignment]
        for name, command in given.items():
            self.commands[name] = command
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        if not _only_builtins():
            return list(self.commands)
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if self._listing and cmd_name in COMMANDS and self.commands.loaded(cmd_name) is None:
            return typer.core.TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return self.commands.get(cmd_name)

    def _listed(self, method: Callable[..., Any], *args: Any) -> Any:
        self._listing = True
        try:
            return method(*args)
        finally:
            self._listing = False

    def format_help(self, ctx: Any, formatter: Any) -> None:
        return self._listed(super().format_help, ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        return self._listed(super().shell_complete, ctx, incomplete)
