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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symkd.teachers.base import Teacher


class TeacherSpec(str):
    """backend, model (the spec's model part), options (TeacherOptions fields and the backend's
    own, given ones only) and ``instance`` (a Teacher or a LangChain chat model, or None)."""

    backend: str
    model: str
    options: dict[str, Any]
    instance: Any

    def __new__(cls, text: str, backend: str, model: str, options: dict[str, Any] | None = None,
                instance: Any = None) -> "TeacherSpec":  # fmt: skip
        self = super().__new__(cls, text)
        self.backend, self.model, self.instance = backend, model, instance
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self._memo: dict[str, Any] = {}  # heavy, identity: of this spec and its options
        self._built: dict[str, Any] = {}  # the LangChain model: shared with with_options() copies
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (TeacherSpec, (str(self), self.backend, self.model, self.options, self.instance))

    def __repr__(self) -> str:  # messages name the teacher as the user wrote it
        return repr(str(self))

    @property
    def text(self) -> str:
        """The spec as plain text (what a worker in another process parses again)."""
        return str(self)

    def with_options(self, options: dict[str, Any]) -> "TeacherSpec":
        """The same teacher with ``options`` added (this spec itself when they change nothing);
        a LangChain model built already is shared, not built again."""
        merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        if merged == self.options:
            return self
        other = TeacherSpec(str(self), self.backend, self.model, merged, self.instance)
        other._built = self._built
        return other

    @property
    def teacher(self) -> "Teacher | None":
        """The Teacher instance this spec was made from, if any."""
        from symkd.teachers.base import Teacher

        return self.instance if isinstance(self.instance, Teacher) else None

    @property
    def heavy(self) -> bool:
        """Whether the teacher runs in-process (load it once); a missing backend is a UserError."""
        if self.instance is not None:
            return bool(getattr(self.instance, "heavy", False))
        if "heavy" not in self._memo:
            from symkd.teachers.registry import backend_class

            self._memo["heavy"] = backend_class(self.backend).heavy
        return self._memo["heavy"]

    @property
    def identity(self) -> tuple[str, str] | None:
        """(backend, model) of the cache keys, without loading weights; None if only a built
        teacher knows it (a plugin backend)."""
        if "identity" not in self._memo:
            from symkd.teachers.registry import spec_identity

            self._memo["identity"] = spec_identity(self)
        return self._memo["identity"]

    def chat_model(self) -> Any:
        """The LangChain chat model (imported and, for a factory, made once per spec and the
        copies :meth:`with_options` made of it)."""
        if "chat_model" not in self._built:
            from symkd.teachers.langchain_chat import load_chat_model

            self._built["chat_model"] = self.instance if self.instance is not None else load_chat_model(self.model)
        return self._built["chat_model"]

    def load(self) -> "Teacher":
        """A Teacher for this spec: the instance it was made from, else a new one."""
        if self.teacher is not None:
            return self.teacher
        from symkd.teachers.registry import build_teacher

        return build_teacher(self)
