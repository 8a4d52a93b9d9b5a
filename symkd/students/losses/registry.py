"""KD loss names -> classes: the one place a loss is registered.

Classes are imported only when built (they need torch), so listing names stays cheap.
``get_loss("skew_forward_kl", alpha=0.2)`` or a CLI spec ``"skew_forward_kl:alpha=0.2"``;
hyphens and case are accepted (``Skew-Forward-KL``). A trainer passes ``total_steps`` always;
it reaches only losses that need it (TAID).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from symkd.errors import UserError
from symkd.plugins import Registry
from symkd.specs import parse_spec

if TYPE_CHECKING:
    from symkd.students.losses.base import KDLoss

#: built-in losses; users add theirs through the ``symkd.losses`` entry-point group
BUILTIN_LOSSES: dict[str, str] = {
    "forward_kl": "symkd.students.losses.forward_kl:ForwardKL",
    "reverse_kl": "symkd.students.losses.reverse_kl:ReverseKL",
    "skew_forward_kl": "symkd.students.losses.skew_kl:SkewForwardKL",
    "skew_reverse_kl": "symkd.students.losses.skew_kl:SkewReverseKL",
    "jsd": "symkd.students.losses.jsd:GeneralizedJSD",
    "taid": "symkd.students.losses.taid:TAID",
}
REGISTRY = Registry("symkd.losses", "KD loss", BUILTIN_LOSSES)


class _Losses:
    """Read-only view of the registry's names (``for name in LOSSES``, ``name in LOSSES``)."""

    def __iter__(self):  # noqa: ANN204
        return iter(REGISTRY.names())

    def __contains__(self, name: object) -> bool:
        return name in REGISTRY

    def __len__(self) -> int:
        return len(REGISTRY.names())


LOSSES = _Losses()

#: short names used by DistiLLM / TAID scripts
ALIASES: dict[str, str] = {
    "fkl": "forward_kl",
    "kl": "forward_kl",
    "rkl": "reverse_kl",
    "skl": "skew_forward_kl",
    "sfkl": "skew_forward_kl",
    "srkl": "skew_reverse_kl",
    "gjsd": "jsd",
}


def loss_names() -> list[str]:
    """Registered loss names, in registry order."""
    return REGISTRY.names()


def canonical_name(name: str) -> str:
    """``"Skew-Forward-KL"`` -> ``"skew_forward_kl"``; a UserError listing known names otherwise."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise UserError(f"unknown KD loss {name!r}; known: {', '.join(REGISTRY.names())}")
    return key


def loss_class(name: str) -> type[KDLoss]:
    return REGISTRY.load(canonical_name(name))


def parse_loss_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` -> (canonical name, options)."""
    name, options = parse_spec(spec, "KD loss")
    return canonical_name(name), options


def loss_options(name: str) -> list[str]:
    """The keyword options a loss accepts."""
    params = inspect.signature(loss_class(name).__init__).parameters
    return [p for p in params if p != "self"]


def get_loss(spec: str, *, total_steps: int | None = None, **options: Any) -> KDLoss:
    """Build a loss from a name or spec plus options; unknown options are a clear UserError."""
    name, spec_options = parse_loss_spec(spec)
    cls = loss_class(name)
    merged = {**spec_options, **options}
    spec_steps = merged.pop("total_steps", None)
    total_steps = total_steps if total_steps is not None else spec_steps
    accepted = loss_options(name)
    unknown = sorted(k for k in merged if k not in accepted or k == "total_steps")
    if unknown:
        allowed = [a for a in accepted if a != "total_steps"]
        raise UserError(f"KD loss {name!r} has no option {unknown[0]!r}; options: {', '.join(allowed)}")
    if cls.needs_total_steps:
        if total_steps is None:
            raise UserError(f"KD loss {name!r} needs the number of training steps (total_steps)")
        merged["total_steps"] = total_steps
    return cls(**merged)
