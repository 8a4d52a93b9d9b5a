"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment: a message that names the file/line/field, no traceback."""


class TeacherUnavailable(UserError):
    """A teacher backend cannot start: missing package, missing model, unreachable server."""
