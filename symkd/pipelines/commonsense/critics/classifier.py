"""Trained classifier critic: frozen MiniLM sentence embeddings + a trained logistic head.

A triple is read as a sentence pair: the head and the tail each go through the embedded
all-MiniLM-L6-v2 (mean pooling, L2-normalised) giving ``u`` and ``w``; the relation enters as
a one-hot ``r``. The head (a logistic regression) sees ``[u, w, u*w, |u-w|, r (x) w]`` (the
outer product lets each relation weigh the tail differently) and outputs the probability
that the triple is valid. Artifacts (``symkd commonsense train-critic``) hold only the head's
weights, a card and the validation scores; see :mod:`symkd.pipelines.commonsense.critics.training`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from symkd.pipelines.commonsense.atomic import dev_split  # noqa: F401  (re-exported for students)
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.critics.base import Critic, Verdict
from symkd.errors import UserError
from symkd.paths import data_dir

ENCODER = "all-minilm-l6-v2"
DEFAULT_ARTIFACT = "minilm-atomic"
WEIGHTS = "head.safetensors"
MAX_TOKENS = 64


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: CUDA is not available here")
    return device


RELATION_ORDER = list(RELATIONS)  # one-hot positions; recorded in every card
FEATURES = "[u, w, u*w, |u-w|, onehot(relation) (x) w]; u = head, w = tail embedding"


class Encoder:
    """all-MiniLM-L6-v2 from its embedded package, with an LRU cache of embeddings."""

    def __init__(self, device: str = "auto", batch_size: int = 128, cache_size: int = 20000):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from symkd.teachers.embedded import locate

        folder = locate(ENCODER)
        self.device = pick_device(device)
        self.batch_size = batch_size
        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.cache_size = cache_size

    def embed(self, texts: Sequence[str]):
        """L2-normalised mean-pooled embeddings [len(texts), dim] (CPU float32)."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros((0, self.dim))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))  # similar lengths pad less
        out = torch.empty((len(unique), self.dim))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [unique[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu()
        pos = {t: i for i, t in enumerate(unique)}
        return out[[pos[t] for t in texts]]

    def embed_cached(self, texts: Sequence[str]):
        """Like :meth:`embed`, through an LRU cache (heads and common tails repeat)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, vec in zip(missing, self.embed(missing)):
                self._cache[t] = vec
        rows = []
        for t in texts:
            self._cache.move_to_end(t)
            rows.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows) if rows else torch.zeros((0, self.dim))

    def clear_cache(self) -> None:
        self._cache.clear()

    def features(self, triples: Sequence[tuple[str, str, str]]):
        """(x, r) for (head, relation, tail) triples: ``x = [u, w, u*w, |u-w|]``, ``r`` relation ids."""
        index = {r: i for i, r in enumerate(RELATION_ORDER)}
        for _, rel, _ in triples:
            if rel not in index:
                raise UserError(f"relation {rel!r}: not an ATOMIC2020 relation")
        u = self.embed_cached([h.strip().rstrip(".") for h, _, _ in triples])
        w = self.embed_cached([t.strip() for _, _, t in triples])
        r = torch.tensor([index[rel] for _, rel, _ in triples], dtype=torch.long)
        return torch.cat([u, w, u * w, (u - w).abs()], dim=1), r


_ENCODERS: dict[str, Encoder] = {}


def get_encoder(device: str = "auto") -> Encoder:
    """One shared encoder per device (loading MiniLM takes a second or two)."""
    device = pick_device(device)
    if device not in _ENCODERS:
        _ENCODERS[device] = Encoder(device)
    return _ENCODERS[device]


class PairHead(nn.Module):
    """Logistic regression over :data:`FEATURES`, without building the one-hot outer product:
    logit = ``base . [u, w, u*w, |u-w|] + bias + rel[r] . w``."""

    def __init__(self, dim: int, relations: int):
        super().__init__()
        self.dim = dim
        self.base = nn.Linear(4 * dim, 1)
        self.rel = nn.Parameter(torch.zeros(relations, dim))

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        w = x[:, self.dim : 2 * self.dim]
        return self.base(x).squeeze(-1) + (self.rel[r] * w).sum(-1)


def build_head(config: dict[str, Any]) -> PairHead:
    return PairHead(int(config["dim"]), len(config["relations"]))


def artifact_version(folder: Path) -> str:
    """``minilm-<hash8>`` of the weights and encoder name: a new model records new score rows."""
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes() + ENCODER.encode()).hexdigest()
    return f"minilm-{digest[:8]}"


def resolve_model(model: str | Path | None) -> Path:
    """An artifact folder: a path, or the name of a folder in the bundled critics/ (default minilm-atomic)."""
    if not model:
        return data_dir("critics") / DEFAULT_ARTIFACT
    path = Path(model)
    bundled = data_dir("critics") / str(model)
    return bundled if not path.is_dir() and len(path.parts) == 1 and bundled.is_dir() else path


def load_artifact(folder: str | Path | None = None):
    """(head module, card dict, validation curve dict, version) of a trained artifact folder."""
    from safetensors.torch import load_file

    folder = resolve_model(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such critic folder (train one with `symkd commonsense train-critic`)")
    for name in (WEIGHTS, "card.json", "validation.json"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: missing {name} (not a classifier critic artifact)")
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        curve = json.loads((folder / "validation.json").read_text(encoding="utf-8"))
        head = build_head(card["head"])
        head.load_state_dict(load_file(str(folder / WEIGHTS)))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{folder}: unreadable classifier artifact ({exc})") from None
    if card.get("encoder") != ENCODER:
        raise UserError(f"{folder}/card.json: encoder {card.get('encoder')!r} is not {ENCODER!r}")
    if card["head"].get("relations") != RELATION_ORDER:
        raise UserError(f"{folder}/card.json: head.relations differ from this symkd's relations; retrain")
    return head.eval(), card, curve, artifact_version(folder)


def precision_at(curve: dict[str, list], threshold: float) -> float | None:
    """Validation precision of the items scoring >= threshold (None when none do)."""
    kept = [label for score, label in zip(curve["scores"], curve["labels"]) if score >= threshold]
    return round(sum(kept) / len(kept), 4) if kept else None


class ClassifierCritic(Critic):
    """Probability that a (head, relation, tail) triple is valid, from a trained MiniLM head."""

    name = "classifier"
    item_table = "triples"
    batch_size = 512

    def __init__(
        self,
        model: str | Path | None = None,
        threshold: float | str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
    ):
        self.folder = resolve_model(model)
        self.head, self.card, self.curve, self.version = load_artifact(self.folder)
        self.threshold = self._resolve_threshold(threshold)
        self.device_spec = device
        if batch_size is not None:
            if int(batch_size) < 1:
                raise UserError(f"critic classifier: batch_size must be >= 1, got {batch_size}")
            self.batch_size = int(batch_size)
        self._encoder: Encoder | None = None

    def _resolve_threshold(self, threshold: float | str | None) -> float:
        thresholds = self.card["thresholds"]
        if threshold is None:
            return float(self.card["threshold"])
        if isinstance(threshold, str) and threshold not in thresholds:
            try:
                threshold = float(threshold)
            except ValueError:
                names = ", ".join(sorted(thresholds))
                raise UserError(f"critic classifier: threshold {threshold!r} is neither a number nor one of {names}") from None
        if isinstance(threshold, str):
            return float(thresholds[threshold]["threshold"])
        value = float(threshold)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"critic classifier: threshold must be within 0..1 (a probability), got {value}")
        return value

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = get_encoder(self.device_spec)
            self.head.to(self._encoder.device)
        return self._encoder

    def probabilities(self, triples: Sequence[tuple[str, str, str]]) -> list[float]:
        if not triples:
            return []
        enc = self.encoder
        with torch.inference_mode():
            x, r = enc.features(triples)
            return torch.sigmoid(self.head(x.to(enc.device), r.to(enc.device))).cpu().tolist()

    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        for item in items:
            if item.get("relation") not in RELATIONS:
                raise UserError(f"triple {item.get('id')}: relation {item.get('relation')!r} is not an ATOMIC2020 relation")
        probs = self.probabilities([(it["head"], it["relation"], it["tail"]) for it in items])
        return [Verdict(score=p, keep=p >= self.threshold) for p in probs]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self.folder.name, "encoder": ENCODER}

    def estimated_precision(self) -> float | None:
        return precision_at(self.curve, self.threshold)
