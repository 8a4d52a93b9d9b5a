"""Forward KL: ``KL(p_teacher || q_student)`` per token (Hinton et al., 2015; mode-covering)."""

from __future__ import annotations

from torch import Tensor

from symkd.students.losses.base import KDLoss, kl_per_token, log_probs


class ForwardKL(KDLoss):
    """``Σ_v p_v (log p_v - log q_v)``, p = teacher, q = student (both at the temperature).

    The teacher-entropy term is kept, so the value is a true KL (0 when q = p); DistiLLM's code
    drops it (a cross-entropy), which changes the value but not the gradient.
    """

    name = "forward_kl"

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        return kl_per_token(log_probs(teacher, keep), log_probs(student, keep), keep)
