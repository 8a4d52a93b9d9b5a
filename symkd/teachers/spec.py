"""A teacher parsed once: :class:`TeacherSpec`, handed down from the entry point to the worker.

A spec string (``openai:gpt-4o``, ``langchain:pkg.mod:factory``, ``smollm2``), a built
:class:`~symkd.teachers.base.Teacher` or a LangChain chat model instance becomes a
``TeacherSpec`` once, where it enters symkd (:func:`symkd.teachers.registry.teacher_spec`);
the session, generation and the executors read its backend, cache identity and weight from
it instead of parsing the string again. Its derived values are computed at most once: a
LangChain factory (``langchain:pkg.mod:make_model``) is called once per spec, so once per
run, however many stages and steps the run has.

A ``TeacherSpec`` is also its text (a ``str``: the spec as given, or ``backend:model`` for an
instance), so code that records the teacher by name keeps working with it.

The class is defined in :mod:`symkd.teachers.registry`, next to the backend lookups its lazy
values call (``heavy``, ``identity``, ``load``), so the two modules do not import each other;
this module names it where the rest of symkd imports it from.
"""

from __future__ import annotations

from symkd.teachers.registry import TeacherSpec

__all__ = ["TeacherSpec"]
