"""Acceptance by measured effect: a candidate strategy is kept only when it helps the student.

For a candidate proposed from scenario ``s``:

- the **validation set** is the ``n_validation`` pool scenarios most similar to ``s`` (MiniLM
  cosine), ``s`` itself and the scenarios it imitates or that imitate it left out;
- the **control set** is ``n_control`` other pool scenarios drawn at random (seeded by the
  candidate's id, so a rerun draws the same ones).

On both sets the student answers twice: with its usual guidance (what the library retrieves)
and with the candidate added. The outcomes are paired, so the significance figure is the
exact one-sided sign test (McNemar's exact test) on the validation set's discordant pairs:
``p = P(X >= improved | X ~ Binomial(improved + worsened, 1/2))``. A candidate is accepted
when the validation score rises by more than ``min_gain``, the control score does not fall,
and ``p <= max_p``.

The student is behind the :class:`Scorer` interface: :class:`~.student.StudentScorer` asks
the student model (cached, through a TeacherSession); tests give a deterministic fake.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from math import comb
from typing import Any, Callable, Sequence

import numpy as np

from symkd.pipelines.strategies.scenarios import Scenario


@dataclass(frozen=True)
class Trial:
    """The student on one scenario with this guidance (strategy texts, in prompt order)."""

    scenario: Scenario
    guidance: tuple[str, ...] = ()


@dataclass
class Attempt:
    correct: bool
    text: str = ""  # the student's full answer
    answer: str | None = None  # the final answer extracted from it


class Scorer(ABC):
    """How the student is tried: one :class:`Attempt` per trial, same order."""

    @abstractmethod
    def attempt(self, trials: Sequence[Trial], *, stage: str) -> list[Attempt]: ...

    def describe(self) -> dict[str, Any]:
        return {"scorer": type(self).__name__}


@dataclass
class AcceptanceConfig:
    n_validation: int = 8
    n_control: int = 8
    min_gain: float = 0.0  # validation accuracy must rise by more than this
    max_p: float = 1.0  # and the sign test's p-value be at most this
    merge_threshold: float = 0.9  # cosine at which an accepted strategy merges into an earlier one


@dataclass
class Candidate:
    id: str
    text: str
    scenario: Scenario
    evidence: dict[str, Any] = field(default_factory=dict)
    response_key: str | None = None  # the teacher's answer it was parsed from


def sign_test(improved: int, worsened: int) -> float:
    """One-sided exact sign test: P(at least ``improved`` of the discordant pairs go up by chance)."""
    n = improved + worsened
    if n == 0:
        return 1.0
    return round(sum(comb(n, i) for i in range(improved, n + 1)) / 2**n, 6)


def validation_set(pool: Sequence[Scenario], vectors: np.ndarray, source: Scenario, n: int) -> list[int]:
    """Indices of the ``n`` pool scenarios most similar to ``source`` (itself and its kin left out)."""
    index = {s.id: i for i, s in enumerate(pool)}
    kin = {source.id, source.parent} | {s.id for s in pool if s.parent == source.id}
    query = vectors[index[source.id]] if source.id in index else None
    if query is None or n <= 0:
        return []
    sims = vectors @ query
    order = sorted(range(len(pool)), key=lambda i: (-float(sims[i]), i))
    return [i for i in order if pool[i].id not in kin and pool[i].question != source.question][:n]


def control_set(pool: Sequence[Scenario], exclude: set[int], n: int, seed_text: str) -> list[int]:
    rest = [i for i in range(len(pool)) if i not in exclude]
    rng = random.Random(int(hashlib.sha256(seed_text.encode()).hexdigest()[:12], 16))
    return sorted(rng.sample(rest, min(n, len(rest))))


def _with(guidance: tuple[str, ...], text: str) -> tuple[str, ...]:
    return (text, *[g for g in guidance if g != text])


def evaluate(
    candidates: Sequence[Candidate],
    pool: Sequence[Scenario],
    vectors: np.ndarray,
    guidance: Callable[[Scenario], tuple[str, ...]],
    scorer: Scorer,
    config: AcceptanceConfig,
) -> None:
    """Fill each candidate's ``evidence`` (one batched call to the scorer for all of them)."""
    plans = []
    for c in candidates:
        val = validation_set(pool, vectors, c.scenario, config.n_validation)
        ctrl = control_set(pool, {*val, *[i for i, s in enumerate(pool) if s.id == c.scenario.id]}, config.n_control, c.id)
        plans.append((c, val, ctrl))
    trials: dict[Trial, int] = {}
    for c, val, ctrl in plans:
        for i in (*val, *ctrl):
            base = guidance(pool[i])
            for trial in (Trial(pool[i], base), Trial(pool[i], _with(base, c.text))):
                trials.setdefault(trial, len(trials))
    order = list(trials)
    outcomes = scorer.attempt(order, stage="acceptance") if order else []
    correct = {t: a.correct for t, a in zip(order, outcomes)}
    for c, val, ctrl in plans:
        c.evidence = _evidence(c, pool, val, ctrl, guidance, correct, config)


def _paired(c: Candidate, pool, idx, guidance, correct) -> tuple[list[bool], list[bool]]:
    base = [correct[Trial(pool[i], guidance(pool[i]))] for i in idx]
    treated = [correct[Trial(pool[i], _with(guidance(pool[i]), c.text))] for i in idx]
    return base, treated


def _summary(pool, idx, base: list[bool], treated: list[bool]) -> dict[str, Any]:
    n = len(idx)
    acc = lambda xs: round(sum(xs) / n, 4) if n else 0.0  # noqa: E731
    return {"n": n, "base": acc(base), "with": acc(treated), "delta": round(acc(treated) - acc(base), 4),
            "improved": sum(t and not b for b, t in zip(base, treated)),
            "worsened": sum(b and not t for b, t in zip(base, treated)),
            "scenarios": [pool[i].id for i in idx]}  # fmt: skip


def _evidence(c, pool, val, ctrl, guidance, correct, config: AcceptanceConfig) -> dict[str, Any]:
    v = _summary(pool, val, *_paired(c, pool, val, guidance, correct))
    k = _summary(pool, ctrl, *_paired(c, pool, ctrl, guidance, correct))
    p = sign_test(v["improved"], v["worsened"])
    if not v["n"]:
        reason = "no validation scenarios"
    elif v["delta"] <= config.min_gain:
        reason = f"validation delta {v['delta']:+.3f} <= {config.min_gain}"
    elif k["delta"] < 0:
        reason = f"control delta {k['delta']:+.3f} < 0"
    elif p > config.max_p:
        reason = f"sign test p {p:.3f} > {config.max_p}"
    else:
        reason = ""
    return {"validation": v, "control": k, "p_value": p, "test": "one-sided exact sign test (McNemar) on validation pairs",
            "decision": "rejected" if reason else "accepted", "reason": reason or "helps on validation, no harm on control",
            "min_gain": config.min_gain, "max_p": config.max_p}  # fmt: skip


def near_duplicate(vector: np.ndarray, matrix: np.ndarray, threshold: float) -> tuple[int, float] | None:
    """(row, cosine) of the most similar earlier strategy at or above ``threshold``, else None."""
    if matrix.size == 0:
        return None
    sims = matrix @ vector
    best = int(np.argmax(sims))
    return (best, float(sims[best])) if float(sims[best]) >= threshold else None
