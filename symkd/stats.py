"""Honest yardsticks for comparing students: binomial intervals and paired tests.

* :func:`wilson_interval`: the 95 % Wilson score interval of an accuracy (k of n), which
  behaves at 0 and 1 where the normal approximation gives nonsense.
* :func:`mcnemar_exact`: the exact (binomial) McNemar test of two systems scored on the same
  items: only the discordant pairs count, two-sided.

Both come from :mod:`scipy.stats` (``binomtest``); this module only fixes the conventions.
"""

from __future__ import annotations

from typing import Sequence


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval; (0, 1) when there are no items."""
    if total <= 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(correct), int(total)).proportion_ci(confidence_level=confidence, method="wilson")
    return round(float(ci.low), 4), round(float(ci.high), 4)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float | int]:
    """Exact two-sided McNemar test of paired outcomes ``a`` and ``b`` (same items, same order).

    Returns ``{"a_only", "b_only", "p_value"}``: items only ``a`` got right, only ``b`` got
    right, and the binomial p-value of that split under "no difference" (1.0 when no pair
    disagrees).
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same items: {len(a)} vs {len(b)}")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    if a_only + b_only == 0:
        return {"a_only": 0, "b_only": 0, "p_value": 1.0}
    from scipy.stats import binomtest

    p = binomtest(a_only, a_only + b_only, 0.5, alternative="two-sided").pvalue
    return {"a_only": a_only, "b_only": b_only, "p_value": round(float(p), 6)}
