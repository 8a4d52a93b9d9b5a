"""Critic names -> classes, through :class:`symkd.plugins.Registry` (built-ins + entry points).

Critics are imported only when used (the classifier pulls in torch). A critic is built from
a name and keyword options: ``load_critic("dedupe", threshold=0.8)``, or from a CLI spec
``name:key=value,key=value`` (``classifier:threshold=0.7``).
"""

from __future__ import annotations

import inspect
from typing import Any

from symkd.critics.base import Critic
from symkd.errors import UserError
from symkd.plugins import Registry
from symkd.specs import parse_spec

#: the generic critics; pipelines register their domain critics (``rules``, ``classifier``
#: for commonsense) through the ``symkd.critics`` entry-point group, as users do
REGISTRY = Registry(
    "symkd.critics",
    "critic",
    {"dedupe": "symkd.critics.dedupe:DedupeCritic", "judge": "symkd.critics.judge:LLMJudgeCritic"},
)


def critic_names() -> list[str]:
    return REGISTRY.names()


def critic_class(name: str) -> type[Critic]:
    cls = REGISTRY.load(name)
    if not (isinstance(cls, type) and issubclass(cls, Critic)):
        raise UserError(f"critic {name!r}: {REGISTRY.target(name)!r} is not a symkd Critic class")
    return cls


def parse_critic_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` -> (name, options)."""
    return parse_spec(spec, "critic")


def split_critic_specs(value: str) -> list[str]:
    """``"rules,classifier:threshold=0.7,dedupe:method=embedding,threshold=0.9"`` -> one spec per critic.

    A comma piece ``key=value`` (no ``:`` before its ``=``) continues the previous critic's options.
    """
    specs: list[str] = []
    for piece in (p.strip() for p in value.split(",")):
        if not piece:
            continue
        key, eq, _ = piece.partition("=")
        if eq and ":" not in key:
            if not specs:
                raise UserError(f"--critics {value!r}: option {piece!r} comes before any critic name")
            specs[-1] += ("," if ":" in specs[-1] else ":") + piece
        else:
            specs.append(piece)
    return specs


def load_critic(spec: str | Critic, **options: Any) -> Critic:
    """Build a critic; unknown options are a clear error naming the critic."""
    if isinstance(spec, Critic):
        return spec
    name, spec_options = parse_critic_spec(spec)
    cls = critic_class(name)
    merged = {**spec_options, **options}
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in merged if k not in accepted)
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        raise UserError(f"critic {name!r} has no option {unknown[0]!r}")
    return cls(**merged)
