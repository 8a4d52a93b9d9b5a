"""TAID: Temporally Adaptive Interpolated Distillation (Shing et al., ICLR 2025, arXiv:2501.16937).

Loss at interpolation parameter ``t`` (p = teacher, q = student, z = logits / temperature)::

    p_t = softmax((1 - t)·stopgrad(z_student) + t·z_teacher)
    J(t) = KL(p_t || q)                      # per token, mean over kept tokens

so ``t = 1`` is plain forward KL to the teacher. ``t`` follows the paper's Algorithm 1 (and
``src/distil_losses/taid.py`` of SakanaAI/TAID), one update per optimizer step ``n`` with the
objective value ``J_n`` just computed::

    n = first update:  only J_prev = J_n is recorded (t stays t_start)
    delta_n = (J_prev - J_n) / (J_prev + 1e-15)          # relative decrease of the objective
    m_n     = momentum·m_{n-1} + (1 - momentum)·delta_n  # m_0 = 0
    dt      = alpha·sigmoid(m_n)·(1 - t_n)
    t_lin   = t_start + (t_end - t_start)·step / total_steps
    t_{n+1} = min(t_end, max(t_lin, t_n + dt))

Defaults: t_start 0.4, t_end 1.0, momentum 0.99, alpha 5e-4. ``dt >= 0``, so t never decreases,
never exceeds t_end (<= 1) and is at least the linear schedule. With ``adaptive=False``
(the reference's ``disable_adaptive``) only the linear schedule is followed:
``t_{n+1} = min(t_end, max(t_n, t_lin))``. ``J`` is the true KL above; the reference code feeds its
cross-entropy form ``KL + H(p_t)`` instead, which only rescales ``delta_n``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from symkd.errors import UserError
from symkd.students.losses.base import IGNORE_INDEX, KDLoss, check_weight, kl_per_token, log_probs


class TAID(KDLoss):
    """Stateful TAID loss: call it for ``J(t)``, then ``after_step(J, step)`` once per optimizer step."""

    name = "taid"
    stateful = True
    needs_total_steps = True

    def __init__(
        self,
        total_steps: int,
        t_start: float = 0.4,
        t_end: float = 1.0,
        momentum: float = 0.99,
        alpha: float = 5e-4,
        adaptive: bool = True,
        temperature: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(temperature=temperature, ignore_index=ignore_index)
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise UserError(f"taid: total_steps must be a positive integer, got {total_steps!r}")
        self.t_start = check_weight(self.name, "t_start", t_start, high_open=True)
        self.t_end = check_weight(self.name, "t_end", t_end, low_open=True)
        if self.t_end < self.t_start:
            raise UserError(f"taid: t_end ({t_end}) must be >= t_start ({t_start})")
        self.momentum = check_weight(self.name, "momentum", momentum, high_open=True)
        self.alpha = check_weight(self.name, "alpha", alpha)
        self.total_steps = total_steps
        self.adaptive = bool(adaptive)
        self._t = self.t_start
        self._m = 0.0
        self._prev: float | None = None

    @property
    def t(self) -> float:
        """Current interpolation parameter (the one the next loss call uses)."""
        return self._t

    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        t = self._t
        zero = torch.zeros_like(student)
        # interpolate finite logits only; an entry that is -inf on either side stays -inf
        mixed = (1.0 - t) * torch.where(keep, student.detach(), zero) + t * torch.where(keep, teacher, zero)
        mixed = mixed.masked_fill(~keep, float("-inf"))
        return kl_per_token(log_probs(mixed, keep), log_probs(student, keep), keep)

    def after_step(self, kd_loss: Tensor | float, step: int) -> None:
        """Advance ``t`` from the KD objective of optimizer step ``step`` (0-based, before the update).

        Call it once per optimizer step (with gradient accumulation: the step's mean KD loss;
        with several processes: the loss averaged across them, so every rank keeps the same t).
        A non-finite loss leaves the state unchanged.
        """
        value = float(kd_loss.detach()) if isinstance(kd_loss, Tensor) else float(kd_loss)
        if not math.isfinite(value):
            return
        if self._prev is None:
            self._prev = value
            return
        delta = (self._prev - value) / (self._prev + 1e-15)
        self._m = self.momentum * self._m + (1.0 - self.momentum) * delta
        t_lin = self.t_start + (self.t_end - self.t_start) * (step / self.total_steps)
        if self.adaptive:
            dt = self.alpha * _sigmoid(self._m) * (1.0 - self._t)
            self._t = min(self.t_end, max(t_lin, self._t + dt))
        else:
            self._t = min(self.t_end, max(self._t, t_lin))
        self._prev = value

    # state travels with ``state_dict()`` / ``load_state_dict()`` (checkpoint and resume)
    def get_extra_state(self) -> dict[str, Any]:
        return {"t": self._t, "momentum_value": self._m, "prev_loss": self._prev}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._t, self._m, self._prev = float(state["t"]), float(state["momentum_value"]), state["prev_loss"]

    def extra_repr(self) -> str:
        return (
            f"t={self._t:.6f}, t_start={self.t_start}, t_end={self.t_end}, momentum={self.momentum}, "
            f"alpha={self.alpha}, total_steps={self.total_steps}, adaptive={self.adaptive}"
        )


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
