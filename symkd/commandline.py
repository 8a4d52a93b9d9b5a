"""Helpers for the command modules of the core and of pipelines: options generated from the
options models, so each option is defined once.

:func:`model_options` adds one ``--flag`` per field of a pydantic model (help from the field's
description, the short flag from its ``cli`` extra or ``aliases``) to a typer command and
hands the command the values that were given, validated by the model. Every command that
takes a teacher uses ``model_options(TeacherOptions, "teacher_options")``; every command
that trains uses ``model_options(TrainConfig, "train_options", ...)``.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

import typer
from pydantic import BaseModel, ValidationError

from symkd.errors import UserError


def _cli_type(annotation: Any) -> Any:
    """The plain type typer parses a field as (validation of the value is the model's)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    inner = args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args else annotation
    if typing.get_origin(inner) is typing.Literal:
        return str
    if typing.get_origin(inner) is list:
        return List[_cli_type(typing.get_args(inner)[0])]  # a repeatable option
    return inner if inner in (int, float, str, bool, Path) else str


def _long_name(name: str, field: Any, prefix: str) -> str:
    """``--prefix-name``, or the field's ``cli`` extra when that is a long name (prefixed too)."""
    cli = _extra(field).get("cli") or ""
    return "--" + prefix + (cli[2:] if cli.startswith("--") else name.replace("_", "-"))


def _extra(field: Any) -> dict[str, Any]:
    return (field.json_schema_extra or {}) if isinstance(field.json_schema_extra, dict) else {}


def _flags(name: str, field: Any, prefix: str, aliases: dict[str, Sequence[str]]) -> list[str]:
    cli = _extra(field).get("cli") or ""
    short = [cli] if cli and not cli.startswith("--") and not prefix else []
    flags = [_long_name(name, field, prefix), *short, *aliases.get(name, ())]
    if _cli_type(field.annotation) is bool and field.default is False:  # off by default: a plain flag
        return flags
    if _cli_type(field.annotation) is bool:
        positive = [f for f in flags if f.startswith("--")]
        flags = [f"{f}/--no-{f[2:]}" for f in positive] + [f for f in flags if not f.startswith("--")]
    return flags


def model_options(
    model: type[BaseModel],
    param: str,
    *,
    prefix: str = "",
    exclude: Sequence[str] = (),
    aliases: dict[str, Sequence[str]] | None = None,
    defaults: dict[str, Any] | None = None,
    rename: dict[str, str] | None = None,
    notes: dict[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the command gets ``param`` = {field: value} of the options that were given.

    ``defaults`` are what the command uses when a flag is not given (shown in ``--help``);
    ``rename`` gives a field another long flag (the CLI vocabulary's, :mod:`symkd.cli.vocabulary`);
    ``notes`` adds what a field means in this command to its help (``{"max_tokens": "CoT: per answer"}``).
    """
    aliases, defaults, notes = aliases or {}, defaults or {}, notes or {}
    names = [n for n in model.model_fields if n not in exclude]
    py = {n: f"{prefix.replace('-', '_')}{n}" for n in names}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(command)
        own = [p for p in sig.parameters.values() if p.name != param]
        added = []
        for name in names:
            field = model.model_fields[name]
            shown = defaults.get(name, None if field.is_required() else field.default)
            help_text = (field.description or name.replace("_", " ")) + (f" ({notes[name]})" if name in notes else "")
            help_text += f" (default {shown})" if shown not in (None, "") else ""
            flags = _flags(name, field, prefix, aliases)
            if name in (rename or {}):
                flags[0] = rename[name]  # type: ignore[index]
            option = typer.Option(None, *flags, help=help_text, show_default=False)
            added.append(inspect.Parameter(py[name], inspect.Parameter.KEYWORD_ONLY, default=option,
                                           annotation=Optional[_cli_type(field.annotation)]))  # fmt: skip

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(py[n]) for n in names}
            kwargs[param] = {**defaults, **{k: v for k, v in given.items() if v is not None}}
            return command(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return wrapper

    return decorate


TEACHER_FORMS = "smollm2, openai:MODEL, hf:ID|DIR, llamacpp:FILE, langchain:mod:attr, ..."


def teacher_option(default: Any = "smollm2", *, role: str = "teacher spec", note: str = "") -> Any:
    """The one ``--teacher/-t`` declaration: ``default`` ``...`` makes it required, None optional."""
    return typer.Option(default, "--teacher", "-t", help=f"{role}: {TEACHER_FORMS}" + (f" ({note})" if note else ""))


def console() -> Any:
    """A rich console for tables: the terminal's width, or unbounded when piped (no cut at 80)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000)


def build(model: type[BaseModel], values: dict[str, Any], prefix: str = "", flags: dict[str, str] | None = None) -> Any:
    """``model(**values)``; a bad value is one line naming its flag (``--rpm: must be ...``);
    ``flags`` names the flag of a field the command spells otherwise (``{"n": "--samples"}``)."""
    try:
        return model(**values)
    except ValidationError as exc:
        from symkd.options import option_error

        def flag_of(name: str) -> str:
            field = model.model_fields.get(name)
            flag = _long_name(name, field, prefix) if field is not None else f"--{prefix}{name.replace('_', '-')}"
            return (flags or {}).get(name, flag)

        raise UserError(option_error(exc, flag_of)) from None
