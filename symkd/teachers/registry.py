"""Teacher specs -> backends. The one place a new backend is registered.

A spec is a plain string: ``BACKEND:MODEL`` (``openai:gpt-4o-mini``,
``hf:HuggingFaceTB/SmolLM2-135M-Instruct``, ``llamacpp:/path/model.gguf``,
``langchain:my_pkg.module:make_chat_model``) or the name of an embedded model (``smollm2``).
Backend modules are imported only when used, so API teachers never import torch. Backends
of other packages come from the ``symkd.teachers`` entry-point group (``name = "pkg.mod:Class"``,
a :class:`~symkd.teachers.base.Teacher` subclass). A spec string is parsed once, by
:func:`teacher_spec`, into a :class:`TeacherSpec` that is handed down (defined here, next to the
backend lookups its lazy values call; :mod:`symkd.teachers.spec` names it too).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from typing import Any

from symkd.errors import UserError
from symkd.plugins import Registry
from symkd.teachers.base import Teacher
from symkd.teachers.options import as_options, fields
from symkd.teachers.urls import model_at


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...]  # importable module names the backend needs
    extra: str  # pip extra that installs them
    summary: str


BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in [
        BackendInfo(
            "openai",
            "symkd.teachers.openai_api:OpenAITeacher",
            ("aiohttp",),
            "",
            "any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama); --base-url",
        ),
        BackendInfo(
            "hf",
            "symkd.teachers.hf:HFTeacher",
            ("torch", "transformers"),
            "hf",
            "local transformers model: hub id, folder or .gguf file; CUDA+bf16 when present",
        ),
        BackendInfo(
            "llamacpp",
            "symkd.teachers.llamacpp:LlamaCppTeacher",
            ("llama_cpp",),
            "llamacpp",
            "in-process llama.cpp for GGUF files (fast on the CPU)",
        ),
        BackendInfo(
            "langchain",
            "symkd.teachers.langchain_chat:LangChainTeacher",
            ("langchain_core",),
            "langchain",
            "any LangChain BaseChatModel: langchain:package.module:factory_or_instance",
        ),
    ]
}


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
        return self.instance if isinstance(self.instance, Teacher) else None

    @property
    def heavy(self) -> bool:
        """Whether the teacher runs in-process (load it once); a missing backend is a UserError."""
        if self.instance is not None:
            return bool(getattr(self.instance, "heavy", False))
        if "heavy" not in self._memo:
            self._memo["heavy"] = backend_class(self.backend).heavy
        return self._memo["heavy"]

    @property
    def identity(self) -> tuple[str, str] | None:
        """(backend, model) of the cache keys, without loading weights; None if only a built
        teacher knows it (a plugin backend)."""
        if "identity" not in self._memo:
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
        return build_teacher(self)


#: backends of other packages (entry points), looked up only for names not built in
PLUGINS = Registry("symkd.teachers", "teacher backend")


def backends() -> dict[str, BackendInfo]:
    """Built-in backends plus those installed through entry points."""
    extra = {
        name: BackendInfo(name, target, (), "", f"plugin backend ({target})")
        for name, target in PLUGINS.targets().items()
        if name not in BACKENDS and isinstance(target, str)
    }
    return {**BACKENDS, **extra}


def installed(info: BackendInfo) -> bool:
    return all(importlib.util.find_spec(mod) is not None for mod in info.requires)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into (backend, model); embedded names resolve to their backend."""
    from symkd.teachers import embedded

    spec = (spec or "").strip()
    if not spec:
        raise UserError("empty teacher spec")
    if spec in embedded.EMBEDDED:
        return embedded.resolve(spec)
    backend, sep, model = spec.partition(":")
    if not sep or backend not in backends():
        known = ", ".join([*backends(), *embedded.EMBEDDED])
        raise UserError(f"unknown teacher spec {spec!r}: use BACKEND:MODEL with BACKEND one of {known}")
    if not model:
        raise UserError(f"teacher spec {spec!r} names no model")
    return backend, model


def backend_class(name: str) -> type[Teacher]:
    info = backends()[name]
    missing = [mod for mod in info.requires if importlib.util.find_spec(mod) is None]
    if missing:
        hint = f"pip install 'symkd[{info.extra}]'" if info.extra else "pip install symkd"
        raise UserError(f"teacher backend {name!r} needs {', '.join(missing)}: {hint}")
    module_name, _, cls_name = info.target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Teacher)):
        raise UserError(f"teacher backend {name!r}: {info.target} is not a symkd Teacher class")
    return cls


def teacher_spec(teacher: Any, **options: Any) -> TeacherSpec:
    """A spec string, a Teacher, a LangChain chat model or a TeacherSpec -> a TeacherSpec.

    The one place a spec string is parsed; a TeacherSpec comes back as it is (with
    ``options`` added), so passing it down parses nothing again.
    """
    if isinstance(teacher, TeacherSpec):
        return teacher.with_options(options)
    if isinstance(teacher, Teacher):
        return TeacherSpec(teacher.spec, teacher.backend, teacher.model_id, options, teacher)
    if _is_chat_model(teacher):
        from symkd.teachers.langchain_identity import identity

        name = options.get("name") or identity(teacher)
        return TeacherSpec(f"langchain:{name}", "langchain", name, options, teacher)
    if not isinstance(teacher, str):
        kind = type(teacher).__name__
        raise UserError(f"teacher: give a spec string, a symkd Teacher or a LangChain chat model, not {kind}")
    backend, model = parse_spec(teacher)
    return TeacherSpec(teacher.strip(), backend, model, options)


def _is_chat_model(value: Any) -> bool:
    """Whether ``value`` is a LangChain BaseChatModel (without importing LangChain when it cannot be)."""
    module = sys.modules.get("langchain_core.language_models")
    return module is not None and isinstance(value, module.BaseChatModel)


def load_teacher(spec: Any, **options: Any) -> Teacher:
    """Build a teacher from a spec (string, TeacherSpec, LangChain chat model or Teacher) and
    :class:`~symkd.teachers.options.TeacherOptions` fields.

    None means the backend's default; an option the backend does not take is left out; a name
    that is neither a teacher option nor one of the backend's own is a UserError naming it.
    """
    return teacher_spec(spec, **options).load()


def _accepted(cls: type) -> set[str]:
    """The keyword settings a backend class takes: its own, and :class:`ApiPacing`'s for API backends."""
    from symkd.teachers.base import APITeacher, ApiPacing

    params = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in params if p.kind is not p.VAR_KEYWORD and p.name not in ("self", "model")}
    return names | set(ApiPacing.model_fields) if issubclass(cls, APITeacher) else names


def build_teacher(spec: TeacherSpec) -> Teacher:
    """A new Teacher of the spec's backend with the spec's options (see :func:`load_teacher`)."""
    cls = backend_class(spec.backend)
    options = spec.options
    accepted = _accepted(cls)
    own = frozenset(accepted - set(fields()))
    unknown = sorted(k for k in options if k not in fields() and k not in own)
    if unknown:
        names = ", ".join(sorted({*fields(), *own}))
        raise UserError(f"unknown teacher option {unknown[0]!r}; accepted: {names}")
    given = {**as_options(options, extra_ok=own).given(), **{k: v for k, v in options.items() if k in own}}
    model = spec.chat_model() if spec.backend == "langchain" else spec.model
    return cls(model, **{k: v for k, v in given.items() if k in accepted})


def cache_identity(spec: Any, **options: Any) -> tuple[str, str] | None:
    """(backend, model) that cache keys use, without loading the model; None if unknown.

    Lets a fully cached run be replayed without importing SDKs or loading weights. For the
    OpenAI backend the model part names the server too (key scheme v2, see README).
    """
    return teacher_spec(spec, **options).identity


def spec_identity(spec: TeacherSpec) -> tuple[str, str] | None:
    """What :attr:`TeacherSpec.identity` holds (computed once per spec)."""
    from symkd.teachers.embedded import model_id

    if spec.teacher is not None:
        return spec.teacher.cache_identity()
    if spec.backend == "langchain":  # from the model's parameters: wraps the (once-built) chat model
        return build_teacher(spec).cache_identity()
    if spec.backend not in BACKENDS:
        return None
    if spec.backend == "openai":
        from symkd.teachers.urls import server_url

        return spec.backend, model_at(model_id(spec.model), server_url(spec.options.get("base_url")))
    if spec.backend == "hf":
        from symkd.teachers.embedded import offline_stand_in

        stand_in = offline_stand_in(spec.model)
        return spec.backend, with_dtype(model_id(str(stand_in) if stand_in else spec.model), spec.options.get("dtype"))
    return spec.backend, model_id(spec.model)


def with_dtype(model: str, dtype: str | None) -> str:
    """A local model's cache identity: the model, plus the dtype when one was chosen (bfloat16 and
    float32 answer differently; ``auto`` keeps the plain identity, so caches written before stay
    valid and a run resumed on another machine reuses them)."""
    return model if dtype in (None, "auto") else f"{model}@{dtype}"


def list_backends() -> list[dict[str, Any]]:
    from symkd.teachers import embedded

    rows = [
        {"name": b.name, "installed": installed(b), "extra": b.extra, "summary": b.summary}
        for b in backends().values()
    ]
    for name, entry in embedded.EMBEDDED.items():
        path = embedded.locate(name, required=False)
        rows.append(
            {
                "name": name,
                "installed": path is not None,
                "extra": "hf",
                "summary": f"embedded {entry.description} ({path or 'package ' + entry.package + ' not installed'})",
            }
        )
    return rows
