"""Retrieval at inference: the top-k library strategies most similar to a question.

    from symkd.pipelines.strategies import retrieve, format_guidance
    hits = retrieve("lib.db", "A shop sells 3 pens for $2 ...", k=3, min_similarity=0.3)
    system_prompt += format_guidance([s.text for s in hits])

Other pipelines reach it by name, without importing this one: ``symkd agent eval --strategies
DB`` and ``symkd agent eval-gsm8k --strategies DB`` call
``symkd.plugins.CONTEXT_PROVIDERS.load("strategies")(db, k=3, min_similarity=0.3)`` and prepend
what the returned function gives for each question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from symkd.store.db import Store
from symkd.pipelines.strategies.library import Strategy, library, library_opened

GUIDANCE_HEADER = "Strategies that may help:"


def rank(strategies: Sequence[Strategy], matrix: np.ndarray, query: np.ndarray, *, k: int = 3,
         min_similarity: float = 0.3) -> list[Strategy]:  # fmt: skip
    """The ``k`` strategies most similar to ``query`` (ties: library order) at or above ``min_similarity``."""
    if k <= 0 or not len(strategies):
        return []
    sims = matrix @ query
    order = sorted(range(len(strategies)), key=lambda i: (-float(sims[i]), i))
    out = []
    for i in order[:k]:
        if float(sims[i]) < min_similarity:
            break
        hit = Strategy(**{**strategies[i].as_dict(), "similarity": round(float(sims[i]), 4)})
        out.append(hit)
    return out


def retrieve(db: str | Path | Store, question: str, k: int = 3, min_similarity: float = 0.3) -> list[Strategy]:
    """Top-``k`` accepted (or edited) strategies for ``question``, most similar first."""
    return Retriever(db).retrieve(question, k=k, min_similarity=min_similarity)


def format_guidance(texts: Sequence[str]) -> str:
    """The block added to the student's system prompt ("" when there is nothing to add)."""
    if not texts:
        return ""
    return GUIDANCE_HEADER + "\n" + "\n".join(f"- {' '.join(t.split())}" for t in texts)


class Retriever:
    """The library loaded once (texts and embeddings), queried many times."""

    def __init__(self, db: str | Path | Store, *, before: tuple[str, int] | None = None):
        with library_opened(db) as store:
            self.strategies, self.matrix = library(store, before=before)

    def retrieve(self, question: str, k: int = 3, min_similarity: float = 0.3) -> list[Strategy]:
        if not self.strategies:
            return []
        from symkd.embeddings import encode

        return rank(self.strategies, self.matrix, encode([question])[0], k=k, min_similarity=min_similarity)


def context_provider(db: str | Path, k: int = 3, min_similarity: float = 0.3) -> Callable[[str], str]:
    """The ``strategies`` context provider: ``question -> guidance block`` ("" when none match).

    Registered in the ``symkd.context`` entry-point group; an unknown DB or one without a
    library is a one-line UserError when the provider is made, not at the first question."""
    retriever = Retriever(db)

    def provide(question: str) -> str:
        return format_guidance([s.text for s in retriever.retrieve(question, k=k, min_similarity=min_similarity)])

    provide.strategies = len(retriever.strategies)  # type: ignore[attr-defined]
    return provide
