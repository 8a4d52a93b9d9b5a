"""The executor in effect: a context variable, so pipelines need no executor parameter.

Pipelines build their :class:`~symkd.session.TeacherSession` themselves; reading the current
executor there (and in :func:`~symkd.critics.base.apply_critic`) gives every stage of every
pipeline the executor the caller chose, without threading a parameter through each one.
``None`` means the local path.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from symkd.scale.base import Executor

_CURRENT: contextvars.ContextVar["Executor | None"] = contextvars.ContextVar("symkd_executor", default=None)


def current_executor() -> "Executor | None":
    """The executor set by the innermost :func:`use_executor` (None: run locally)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_executor(executor: "Executor | None") -> Iterator["Executor | None"]:
    """Make ``executor`` the current one inside the block (None keeps the local path)."""
    token = _CURRENT.set(executor)
    try:
        yield executor
    finally:
        _CURRENT.reset(token)
