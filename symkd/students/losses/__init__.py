"""White-box KD losses (shared tokenizer, local teacher): one module per loss, one registry.

Trainer usage::

    kd = get_loss(args.kd_loss, total_steps=num_optimizer_steps, **kd_options)
    s, t, y = shift_for_causal_lm(student_out.logits, teacher_out.logits, labels)
    kd_value = kd(s, t, y)                       # token mean; teacher detached
    loss = mix(student_out.loss, kd_value, kd_weight)
    ...optimizer step...
    kd.after_step(kd_value, step)                # no-op except for stateful losses (TAID)

Names: forward_kl, reverse_kl, skew_forward_kl, skew_reverse_kl, jsd, taid.
The registry is importable without torch; the classes and helpers load on first use.
"""

from __future__ import annotations

from typing import Any

from symkd.students.losses.registry import ALIASES, LOSSES, get_loss, loss_class, loss_names, parse_loss_spec

_LAZY = {
    "KDLoss": "base",
    "mix": "base",
    "shift_for_causal_lm": "base",
    "IGNORE_INDEX": "base",
    "ForwardKL": "forward_kl",
    "ReverseKL": "reverse_kl",
    "SkewForwardKL": "skew_kl",
    "SkewReverseKL": "skew_kl",
    "GeneralizedJSD": "jsd",
    "TAID": "taid",
}

__all__ = ["ALIASES", "LOSSES", "get_loss", "loss_class", "loss_names", "parse_loss_spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"symkd.students.losses.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'symkd.students.losses' has no attribute {name!r}")
