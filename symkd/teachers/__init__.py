"""Teacher backends behind one interface. See :mod:`symkd.teachers.registry`."""

from symkd.teachers.base import APITeacher, LocalTeacher, Teacher
from symkd.teachers.registry import list_backends, load_teacher, parse_spec, teacher_spec
from symkd.teachers.spec import TeacherSpec
from symkd.teachers.types import Completion, GenerationParams, Message, Request, Response, Usage

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
