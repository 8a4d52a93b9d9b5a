"""Common machinery of the token-level white-box KD losses.

Every loss is a ``KDLoss`` (a ``torch.nn.Module``) called as
``loss_fn(student_logits, teacher_logits, labels)``:

* ``student_logits``, ``teacher_logits``: ``[..., V]`` (usually ``[B, T, V]``), any float dtype;
  computed in float32. Position ``i`` of the logits must predict ``labels[i]``: for a causal
  LM pass the shifted tensors (see :func:`shift_for_causal_lm`).
* ``labels``: ``[...]`` token ids, positions equal to ``ignore_index`` (-100) are left out;
  and/or ``mask``: ``[...]`` (True/1 = keep). Neither given: every position counts.
* Both logits are divided by ``temperature``; the loss is *not* multiplied by T².
* The result is the mean over kept positions of a per-token divergence summed over the vocabulary.
  Teacher logits are always detached: gradients reach the student only.

Vocabulary entries whose logit is ``-inf`` on either side are left out of the vocabulary sum
(the convention of the DistiLLM / MiniLLM / TAID code). That is exact when both models mask the
same entries; where only one side masks an entry it drops a term that would make forward or
reverse KL infinite, so the loss stays finite. No NaN reaches values or gradients either way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from symkd.errors import UserError

IGNORE_INDEX = -100


class KDLoss(torch.nn.Module, ABC):
    """Base class: input checks, masking, float32, temperature, token mean."""

    #: registry name (set by each subclass)
    name: ClassVar[str] = ""
    #: True when the loss carries state across steps (TAID); trainers then call ``after_step``
    stateful: ClassVar[bool] = False
    #: True when the constructor needs ``total_steps`` (the trainer's number of optimizer steps)
    needs_total_steps: ClassVar[bool] = False

    def __init__(self, temperature: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise UserError(f"{self.name}: temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)
        self.ignore_index = int(ignore_index)

    # -- the part each loss defines -------------------------------------------------------
    @abstractmethod
    def divergence(self, student: Tensor, teacher: Tensor, keep: Tensor) -> Tensor:
        """Per-token divergence ``[N]`` from float32 tempered logits ``[N, V]`` (teacher detached).

        ``keep`` ``[N, V]`` is False for vocabulary entries that are ``-inf`` on either side.
        """

    # -- the shared part --------------------------------------------------------------------
    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        labels: Tensor | None = None,
        *,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Scalar float32 loss: mean per-token divergence over the kept positions (0 if none)."""
        student, teacher = self._select(student_logits, teacher_logits, labels, mask)
        keep = ~(torch.isinf(student) | torch.isinf(teacher))
        per_token = self.divergence(student, teacher, keep)
        if per_token.numel() == 0:
            return student.sum() * 0.0  # keeps the graph; the selection is empty
        return per_token.mean()

    def after_step(self, kd_loss: Tensor | float, step: int) -> None:
        """Hook a trainer calls once per optimizer step; stateless losses ignore it."""

    def _select(
        self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        check_shapes(student_logits, teacher_logits)
        keep = torch.ones(student_logits.shape[:-1], dtype=torch.bool, device=student_logits.device)
        for name, extra in (("labels", labels), ("mask", mask)):
            if extra is None:
                continue
            if tuple(extra.shape) != tuple(student_logits.shape[:-1]):
                raise UserError(
                    f"{name} shape {list(extra.shape)} does not match logits {list(student_logits.shape)}"
                    " (expected the logits' shape without the vocabulary axis)"
                )
            keep = keep & (extra != self.ignore_index if name == "labels" else extra.bool())
        scale = 1.0 / self.temperature
        student = student_logits[keep].float() * scale
        teacher = teacher_logits.detach()[keep].float() * scale
        return student, teacher


def check_shapes(student_logits: Tensor, teacher_logits: Tensor) -> None:
    """Clear errors for logits that cannot be compared token by token."""
    if student_logits.dim() < 2:
        raise UserError(f"logits need a vocabulary axis, got shape {list(student_logits.shape)}")
    vs, vt = student_logits.shape[-1], teacher_logits.shape[-1]
    if vs != vt:
        raise UserError(
            f"student and teacher vocabularies differ: {vs} vs {vt} — white-box KD needs a shared tokenizer"
        )
    if student_logits.shape != teacher_logits.shape:
        raise UserError(
            f"student and teacher logits differ in shape: {list(student_logits.shape)} vs "
            f"{list(teacher_logits.shape)} — both must score the same token positions"
        )


def log_probs(logits: Tensor, keep: Tensor) -> Tensor:
    """``log_softmax`` over the full vocabulary, with left-out entries set to 0 (finite)."""
    return torch.log_softmax(logits, dim=-1).masked_fill(~keep, 0.0)


def log_mix(log_a: Tensor, log_b: Tensor, weight: float) -> Tensor:
    """``log(weight·a + (1-weight)·b)`` from log-probabilities, in log space (logaddexp)."""
    if weight >= 1.0:
        return log_a
    if weight <= 0.0:
        return log_b
    return torch.logaddexp(log_a + math.log(weight), log_b + math.log1p(-weight))


def kl_per_token(log_p: Tensor, log_q: Tensor, keep: Tensor) -> Tensor:
    """``KL(p || q) = Σ_v p_v (log p_v - log q_v)`` over kept entries: ``[N, V] -> [N]``."""
    terms = log_p.exp() * (log_p - log_q)
    return torch.where(keep, terms, torch.zeros_like(terms)).sum(dim=-1)


def check_weight(loss: str, option: str, value: Any, *, low_open: bool = False, high_open: bool = False) -> float:
    """A mixing coefficient in [0, 1] (ends optionally open), else a UserError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise UserError(f"{loss}: {option} must be in {lo}0, 1{hi}, got {value!r}")
    return float(value)


def mix(ce_loss: Tensor, kd_loss: Tensor, kd_weight: float) -> Tensor:
    """Training loss ``(1 - w)·CE + w·KD`` with ``w = kd_weight`` in [0, 1]."""
    w = check_weight("kd mix", "kd_weight", kd_weight)
    return (1.0 - w) * ce_loss + w * kd_loss


def shift_for_causal_lm(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Align causal-LM outputs with their targets: logits ``[:, :-1]`` predict labels ``[:, 1:]``."""
    return student_logits[..., :-1, :], teacher_logits[..., :-1, :], labels[..., 1:]
