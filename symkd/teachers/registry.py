"""Teacher specs -> backends. The one place a new backend is registered.

A spec is a plain string: ``BACKEND:MODEL`` (``openai:gpt-4o-mini``,
``hf:HuggingFaceTB/SmolLM2-135M-Instruct``, ``llamacpp:/path/model.gguf``,
``langchain:my_pkg.module:make_chat_model``) or the name of an embedded model (``smollm2``).
Backend modules are imported only when used, so API teachers never import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

from symkd.errors import UserError
from symkd.teachers.base import Teacher


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
            ("openai",),
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
    if not sep or backend not in BACKENDS:
        known = ", ".join([*BACKENDS, *embedded.EMBEDDED])
        raise UserError(f"unknown teacher spec {spec!r}: use BACKEND:MODEL with BACKEND one of {known}")
    if not model:
        raise UserError(f"teacher spec {spec!r} names no model")
    return backend, model


def backend_class(name: str) -> type[Teacher]:
    info = BACKENDS[name]
    missing = [mod for mod in info.requires if importlib.util.find_spec(mod) is None]
    if missing:
        hint = f"pip install 'symkd[{info.extra}]'" if info.extra else "pip install symkd"
        raise UserError(f"teacher backend {name!r} needs {', '.join(missing)}: {hint}")
    module_name, _, cls_name = info.target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)


def load_teacher(spec: str | Teacher, **options: Any) -> Teacher:
    """Build a teacher from a spec. Options a backend does not take are ignored; None = default."""
    if isinstance(spec, Teacher):
        return spec
    backend, model = parse_spec(spec)
    cls = backend_class(backend)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in options.items() if v is not None and k in accepted}
    return cls(model, **kwargs)


def cache_identity(spec: str | Teacher) -> tuple[str, str] | None:
    """(backend, model id) that cache keys use, without loading the model; None if unknown.

    Lets a fully cached run be replayed without importing SDKs or loading weights.
    """
    if isinstance(spec, Teacher):
        return spec.backend, spec.model_id
    from symkd.teachers.embedded import model_id

    backend, model = parse_spec(spec)
    if backend == "langchain":  # identity comes from the built chat model
        return None
    return backend, model_id(model)


def list_backends() -> list[dict[str, Any]]:
    from symkd.teachers import embedded

    rows = [
        {"name": b.name, "installed": installed(b), "extra": b.extra, "summary": b.summary}
        for b in BACKENDS.values()
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
