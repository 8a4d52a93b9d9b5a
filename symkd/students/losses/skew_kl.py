"""Skew forward / skew reverse KL of DistiLLM (Ko et al., ICML 2024, arXiv:2402.03898).

With p = teacher, q = student and skew ``alpha`` (DistiLLM's default 0.1):

* skew forward KL  ``SKL_a(p, q)  = KL(p || a·p + (1-a)·q)``
* skew reverse KL  ``SRKL_a(p, q) = KL(q || a·q + (1-a)·p)``

(as in DistiLLM's ``skewed_forward_kl`` / ``skewed_reverse_kl``, whose ``lam`` is ``alpha``).
Limits: ``alpha = 0`` gives plain forward / reverse KL; ``alpha = 1`` gives 0. Both are bounded
by ``log(1/alpha)`` (the mixture is at least ``alpha`` times the first argument). The mixture's
log is computed in log space (``logaddexp``), never as ``log`` of summed probabilities.
DistiLLM's skew-forward code omits the constant ``Σ p log p`` term (same gradient, other value);
here both are true KLs (0 when q = p).
"""

from __future__ import annotations

from torch import Tensor

from symkd.students.losses.base import IGNORE_INDEX, KDLoss, check_weight, kl_per_token, log_mix, log_probs


class _Skew(KDLoss):
    def __init__(self, alpha: float = 0.1, temperature: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(temperature=temperature, ignore_index=ignore_index)
        self.alpha = check_weight(self.name, "alpha", alpha)


class SkewForwardKL(_Skew):
    """``KL(p || alpha·p + (1-alpha)·q)``."""

    name = "skew_forward_kl"

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        log_p, log_q = log_probs(teacher, keep), log_probs(student, keep)
        return kl_per_token(log_p, log_mix(log_p, log_q, self.alpha), keep)


class SkewReverseKL(_Skew):
    """``KL(q || alpha·q + (1-alpha)·p)``."""

    name = "skew_reverse_kl"

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        log_p, log_q = log_probs(teacher, keep), log_probs(student, keep)
        return kl_per_token(log_q, log_mix(log_q, log_p, self.alpha), keep)
