"""Generalized Jensen-Shannon divergence of GKD (Agarwal et al., ICLR 2024, arXiv:2306.13649, Eq. 1).

With p = teacher, q = student and ``beta`` in (0, 1)::

    m = beta·p + (1-beta)·q
    JSD_beta(p || q) = beta·KL(p || m) + (1-beta)·KL(q || m)

the convention of GKD and of TRL's ``GKDTrainer.generalized_jsd_loss``. Near ``beta = 0`` it
behaves like ``beta·KL(p || q)`` (forward KL) and near ``beta = 1`` like ``(1-beta)·KL(q || p)``
(reverse KL); as in TRL, ``beta = 0`` and ``beta = 1`` are taken to mean plain forward and
reverse KL (the formula itself would give 0 there). ``beta = 0.5`` is the symmetric JSD.
"""

from __future__ import annotations

from torch import Tensor

from symkd.students.losses.base import IGNORE_INDEX, KDLoss, check_weight, kl_per_token, log_mix, log_probs


class GeneralizedJSD(KDLoss):
    """``beta·KL(p || m) + (1-beta)·KL(q || m)``, ``m = beta·p + (1-beta)·q``; default beta 0.5."""

    name = "jsd"

    def __init__(self, beta: float = 0.5, temperature: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(temperature=temperature, ignore_index=ignore_index)
        self.beta = check_weight(self.name, "beta", beta)

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        log_p, log_q = log_probs(teacher, keep), log_probs(student, keep)
        if self.beta == 0.0:
            return kl_per_token(log_p, log_q, keep)
        if self.beta == 1.0:
            return kl_per_token(log_q, log_p, keep)
        log_m = log_mix(log_p, log_q, self.beta)
        return self.beta * kl_per_token(log_p, log_m, keep) + (1.0 - self.beta) * kl_per_token(log_q, log_m, keep)
