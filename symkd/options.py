"""What option models share: the options a user set, and one line for a bad value.

Teacher options, executor options and every command's pydantic options report a bad value the
same way, ``--rpm: must be greater than 0 (got -5)``, naming the flag the user typed.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from symkd.errors import UserError

M = TypeVar("M", bound=BaseModel)


class Options(BaseModel):
    """Base of option models whose unset fields (None) mean "the default of whoever uses them"."""

    def given(self) -> dict[str, Any]:
        """The options that were set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


def default_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option_error(exc: ValidationError, flag_of: Callable[[str], str] = default_flag) -> str:
    """``FLAG: message (got VALUE)`` from pydantic's first error; ``flag_of`` maps a field name
    (dotted for nested fields) to the flag the user typed."""
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err["loc"]) or "option"
    msg = err["msg"].replace("Input should be ", "must be ").replace("Value error, ", "")
    return f"{flag_of(name)}: {msg} (got {given_value(err.get('input'))})"


def given_value(value: Any) -> str:
    """The value a user gave, for an error line: credentials in a URL are not repeated."""
    from symkd.teachers.urls import redact_credentials

    return redact_credentials(repr(value)) if isinstance(value, str) else repr(value)


def configured(model: type[M], config: Any = None, overrides: dict[str, Any] | None = None, *,
               where: str | None = None) -> M:  # fmt: skip
    """A pipeline's settings the way its Python API takes them: ``config`` (a ``model``, a dict, or
    None for the defaults) with ``overrides`` (field names) applied and validated. An unknown or
    bad field is one :class:`UserError` line naming it, after ``where: `` when given
    (``learn_strategies: n_validation: must be greater than 0 (got 0)``)."""
    overrides = overrides or {}
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(overrides) - set(model.model_fields))
    if unknown:
        raise UserError(f"{prefix}unknown option {unknown[0]!r} ({model.__name__} fields: {', '.join(model.model_fields)})")
    if isinstance(config, model) and not overrides:
        return config
    values = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
    try:
        return model(**{**values, **overrides})
    except ValidationError as exc:
        raise UserError(prefix + option_error(exc, str)) from None
