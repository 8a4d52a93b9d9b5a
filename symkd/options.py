"""What option models share: the options a user set, and one line for a bad value.

Teacher options, executor options and every command's pydantic options report a bad value the
same way, ``--rpm: must be greater than 0 (got -5)``, naming the flag the user typed.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError


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
