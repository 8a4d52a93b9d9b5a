"""Teacher backends behind one interface. See :mod:`symkd.teachers.registry`.

The names below load on first use (PEP 562): importing one submodule (``symkd.teachers.options``
for the CLI's options) does not import the others (``teachers.base`` brings asyncio; ~30 ms).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "APITeacher": "base",
    "LocalTeacher": "base",
    "Teacher": "base",
    "list_backends": "registry",
    "load_teacher": "registry",
    "parse_spec": "registry",
    "teacher_spec": "registry",
    "TeacherSpec": "spec",
    "Completion": "messages",
    "GenerationParams": "messages",
    "Message": "messages",
    "Request": "messages",
    "Response": "messages",
    "Usage": "messages",
}

__all__ = [
    "APITeacher",
    "Completion",
    "GenerationParams",
    "LocalTeacher",
    "Message",
    "Request",
    "Response",
    "Teacher",
    "TeacherSpec",
    "Usage",
    "list_backends",
    "load_teacher",
    "parse_spec",
    "teacher_spec",
]

if TYPE_CHECKING:
    from symkd.teachers.base import APITeacher, LocalTeacher, Teacher
    from symkd.teachers.registry import list_backends, load_teacher, parse_spec, teacher_spec
    from symkd.teachers.spec import TeacherSpec
    from symkd.teachers.messages import Completion, GenerationParams, Message, Request, Response, Usage


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
