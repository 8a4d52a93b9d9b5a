"""Critic names -> classes. The one place a new critic is registered.

Critics are imported only when used (the classifier pulls in torch). A critic is built from
a name and keyword options: ``load_critic("dedupe", threshold=0.8)``, or from a CLI spec
``name:key=value,key=value`` (``classifier:threshold=0.7``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from symkd.critics.base import Critic
from symkd.errors import UserError
from symkd.specs import parse_spec

CRITICS: dict[str, str] = {
    "rules": "symkd.critics.rules:RulesCritic",
    "dedupe": "symkd.critics.dedupe:DedupeCritic",
    "classifier": "symkd.critics.classifier:ClassifierCritic",
    "judge": "symkd.critics.judge:LLMJudgeCritic",
}


def critic_class(name: str) -> type[Critic]:
    if name not in CRITICS:
        raise UserError(f"unknown critic {name!r}; known: {', '.join(CRITICS)}")
    module, _, cls = CRITICS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


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
