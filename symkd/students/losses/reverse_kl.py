"""Reverse KL: ``KL(q_student || p_teacher)`` per token (MiniLLM, Gu et al., 2024; mode-seeking)."""

from __future__ import annotations

from torch import Tensor

from symkd.students.losses.base import KDLoss, kl_per_token, log_probs


class ReverseKL(KDLoss):
    """``Σ_v q_v (log q_v - log p_v)``, q = student, p = teacher (both at the temperature)."""

    name = "reverse_kl"

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        return kl_per_token(log_probs(student, keep), log_probs(teacher, keep), keep)
