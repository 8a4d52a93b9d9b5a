"""Dedupe critic: drop tails that repeat an earlier tail of the same (head, relation).

Two tails are *exact* duplicates when their keys match: lower-cased words and numbers,
punctuation dropped, a leading "to" dropped ("To go home." = "go home"). They are *near*
duplicates when (``method="minhash"``, the default) the Jaccard similarity of their word
shingles (1..``shingle``-grams) is >= ``threshold`` (default 0.8; candidates come from a
MinHash LSH index per group built at ``threshold - 0.2`` and are confirmed on the exact
shingle sets), or (``method="embedding"``) the cosine of their all-MiniLM-L6-v2 embeddings
is >= ``threshold`` (default 0.9). ``method="exact"`` only drops exact duplicates. "none" tails are never
duplicates.

The first occurrence in rowid order is kept; later ones are dropped with details naming
the item they repeat. Resume: items this critic (same version) kept in earlier passes are
loaded from the store, so a new item that repeats one of them is dropped too. The critic
reads the store it is bound to (:meth:`DedupeCritic.bind`, or the ``db`` option). With
``rescore`` the pass re-decides its items from scratch and loads nothing.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from symkd.critics.base import Critic, Verdict
from symkd.errors import UserError
from symkd.graphs.triples import TRIPLE_TABLE, is_none, normalize
from symkd.store.db import Store

METHODS = ("minhash", "embedding", "exact")
LSH_MARGIN = 0.2
DEFAULT_THRESHOLD = {"minhash": 0.8, "embedding": 0.9, "exact": 1.0}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tail_key(tail: str) -> str:
    """What exact duplicates share: words and numbers, lower-cased, no leading "to"."""
    tokens = _TOKEN.findall(tail.lower())
    if len(tokens) > 1 and tokens[0] == "to":
        tokens = tokens[1:]
    return " ".join(tokens)


def shingles(key: str, size: int) -> set[str]:
    """Word n-grams for n = 1..size of a :func:`tail_key`."""
    tokens = key.split()
    return {" ".join(tokens[i : i + n]) for n in range(1, size + 1) for i in range(len(tokens) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class _Kept:
    id: str
    tail: str
    key: str
    shingles: set[str]
    minhash: Any = None


@dataclass
class _Group:
    """The kept tails of one (head, relation)."""

    exact: dict[str, _Kept] = field(default_factory=dict)
    kept: dict[str, _Kept] = field(default_factory=dict)
    lsh: Any = None
    vectors: list[Any] = field(default_factory=list)  # embeddings, parallel to vector_ids
    vector_ids: list[str] = field(default_factory=list)


class DedupeCritic(Critic):
    """Exact and near-duplicate tails within a (head, relation) (see the module doc)."""

    name = "dedupe"
    version = "1"
    item_table = TRIPLE_TABLE
    batch_size = 1024

    def __init__(
        self,
        method: str = "minhash",
        threshold: float | None = None,
        shingle: int = 2,
        num_perm: int = 128,
        db: str | Path | Store | None = None,
        model: str = "all-minilm-l6-v2",
    ):
        if method not in METHODS:
            raise UserError(f"critic 'dedupe': method {method!r} is not one of {', '.join(METHODS)}")
        threshold = DEFAULT_THRESHOLD[method] if threshold is None else float(threshold)
        if not 0.0 < threshold <= 1.0:
            raise UserError(f"critic 'dedupe': threshold {threshold} is not in (0, 1]")
        if shingle < 1 or num_perm < 16:
            raise UserError("critic 'dedupe': shingle must be >= 1 and num_perm >= 16")
        self.method, self.threshold = method, threshold
        #: LSH finds candidates at a lower similarity, so few true pairs near the threshold
        #: are missed; each candidate is then confirmed on the exact shingle sets.
        self.lsh_threshold = max(0.1, threshold - LSH_MARGIN)
        self.shingle, self.num_perm, self.model_name = int(shingle), int(num_perm), model
        self._db = db
        self._store: Store | None = db if isinstance(db, Store) else None
        self._rescore = False
        self._encoder: Any = None
        self._lsh_params: tuple[int, int] | None = None
        self._empty: Any = None
        self.reset()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "method": self.method, "shingle": self.shingle, "num_perm": self.num_perm}

    def bind(self, store: Store, *, rescore: bool = False) -> None:
        """Read earlier passes' kept items from ``store`` (unless ``rescore``)."""
        self._store, self._rescore = store, rescore

    def reset(self) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}
        self._priors: dict[tuple[str, str], list[dict[str, Any]]] | None = None

    # -- scoring --------------------------------------------------------------------------
    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        if self._priors is None:
            self._priors = self._load_priors()
        vectors = self._embed([i.get("tail") or "" for i in items]) if self.method == "embedding" else None
        verdicts = []
        for n, item in enumerate(items):
            tail = item.get("tail") or ""
            if is_none(tail):
                verdicts.append(Verdict(1.0, True))
                continue
            group = self._group(item.get("head") or "", item.get("relation") or "")
            kept = _Kept(item["id"], tail, tail_key(tail), set())
            kept.shingles = shingles(kept.key, self.shingle)
            verdict = self._check(group, kept, None if vectors is None else vectors[n])
            if verdict.keep:
                self._add(group, kept, None if vectors is None else vectors[n])
            verdicts.append(verdict)
        return verdicts

    def _check(self, group: _Group, item: _Kept, vector: Any) -> Verdict:
        original = group.exact.get(item.key)
        if original is not None and original.id != item.id:
            return _duplicate(original, "exact", 1.0)
        best: tuple[float, _Kept] | None = None
        if self.method == "minhash" and group.lsh is not None:
            item.minhash = self._minhash(item.shingles)
            for key in group.lsh.query(item.minhash):
                other = group.kept[key]
                sim = jaccard(item.shingles, other.shingles)
                if other.id != item.id and sim >= self.threshold and (best is None or sim > best[0]):
                    best = (sim, other)
        elif self.method == "embedding" and group.vectors:
            import numpy as np

            sims = np.stack(group.vectors) @ vector
            for i in np.argsort(-sims):
                other = group.kept[group.vector_ids[i]]
                if other.id != item.id and sims[i] >= self.threshold:
                    best = (float(sims[i]), other)
                    break
        if best is not None:
            return _duplicate(best[1], "near", best[0])
        return Verdict(1.0, True)

    def _add(self, group: _Group, item: _Kept, vector: Any) -> None:
        group.exact.setdefault(item.key, item)
        group.kept[item.id] = item
        if self.method == "minhash":
            if group.lsh is None:
                group.lsh = self._new_lsh()
            if item.id not in group.lsh:
                group.lsh.insert(item.id, item.minhash or self._minhash(item.shingles))
        elif self.method == "embedding":
            group.vectors.append(vector)
            group.vector_ids.append(item.id)

    # -- groups and earlier passes ----------------------------------------------------------
    def _group(self, head: str, relation: str) -> _Group:
        key = (normalize(head), relation)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
            priors = (self._priors or {}).pop(key, [])
            vectors = self._embed([p["tail"] for p in priors]) if self.method == "embedding" and priors else None
            for n, row in enumerate(priors):
                kept = _Kept(row["id"], row["tail"], tail_key(row["tail"]), set())
                kept.shingles = shingles(kept.key, self.shingle)
                self._add(group, kept, None if vectors is None else vectors[n])
        return group

    def _load_priors(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """Items this critic version kept in earlier passes, by (head, relation), rowid order."""
        if self._rescore:
            return {}
        store = self._store
        if store is None and self._db is not None:
            path = Path(self._db)  # type: ignore[arg-type]
            store = self._store = Store(path, create=False)
        if store is None:
            warnings.warn(
                "dedupe critic has no store: items kept in earlier passes are not compared "
                "(pass db=... or call bind(store))",
                stacklevel=3,
            )
            return {}
        rows = store.query(
            f"select t.id, t.head, t.relation, t.tail from critic_scores s join {self.item_table} t on t.id = s.item_id "
            "where s.item_table = ? and s.critic = ? and s.critic_version = ? and s.decision = 'keep' "
            "order by t.rowid",
            (self.item_table, self.name, self.version),
        )
        priors: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            if not is_none(row["tail"] or ""):
                priors.setdefault((normalize(row["head"] or ""), row["relation"]), []).append(row)
        return priors

    # -- MinHash and embeddings -----------------------------------------------------------
    def _new_lsh(self) -> Any:
        MinHashLSH = _need("datasketch", "MinHashLSH", "minhash")

        if self._lsh_params is None:  # the band/row optimisation is slow: do it once
            first = MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm)
            self._lsh_params = (first.b, first.r)
            return first
        return MinHashLSH(threshold=self.lsh_threshold, num_perm=self.num_perm, params=self._lsh_params)

    def _minhash(self, shingle_set: set[str]) -> Any:
        MinHash = _need("datasketch", "MinHash", "minhash")

        if self._empty is None:  # permutations are drawn once, then shared
            self._empty = MinHash(num_perm=self.num_perm, seed=1)
        mh = MinHash(num_perm=self.num_perm, seed=1, permutations=self._empty.permutations, scheme=self._empty.scheme)
        mh.update_batch([s.encode("utf-8") for s in sorted(shingle_set)])
        return mh

    def _embed(self, texts: list[str]) -> Any:
        if self._encoder is None:
            SentenceTransformer = _need("sentence_transformers", "SentenceTransformer", "embedding")

            from symkd.teachers.embedded import EMBEDDINGS, locate

            if self.model_name in EMBEDDINGS:
                path = locate(self.model_name)
            elif Path(self.model_name).is_dir():
                path = Path(self.model_name)
            else:
                raise UserError(f"critic 'dedupe': model {self.model_name!r} is neither {', '.join(EMBEDDINGS)} nor a folder")
            self._encoder = SentenceTransformer(str(path), device="cpu")
        return self._encoder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)


def _need(module: str, attr: str, method: str) -> Any:
    """``module.attr``, or a one-line error saying what to install for this method."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        dist = module.replace("_", "-")
        raise UserError(f"critic 'dedupe' with method={method} needs {dist}: pip install {dist}") from None


def _duplicate(original: _Kept, kind: str, similarity: float) -> Verdict:
    details = {"duplicate_of": original.id, "duplicate_tail": original.tail, "kind": kind, "similarity": round(similarity, 4)}
    return Verdict(round(1.0 - similarity, 4), False, details)
