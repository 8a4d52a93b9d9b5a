"""One agent step, typed: what the model wrote, what ran, what came back; the chat turns derive from it.

An episode keeps its steps only; its conversation is ``base + [m for s in steps for m in
s.to_messages()]`` (smolagents' ``ActionStep.to_messages`` is the model). A step is stored in
the ``trajectories.steps`` JSON column as :meth:`Step.to_dict` writes it (the keys and their
order are those of the dicts earlier versions wrote, so stored rows and exports do not change);
:meth:`Step.from_dict` reads that form back, old rows included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symkd.pipelines.agents.actions import PARSE_ERROR_OBSERVATION, Action, format_action, observation

#: stored keys written only when set (a parse failure has no run; gold steps have no restart or vote)
_OPTIONAL = ("vote", "is_final", "restarted")
_KNOWN = ("raw", "thought", "code", "parse_error", "stdout", "error", "tool_calls", "timed_out", "seconds",
          *_OPTIONAL, "observation")  # fmt: skip


@dataclass
class Step:
    """``raw``: the model's text (with a prefilled first thought); ``thought``/``code``: the parsed
    action (None on a parse failure); ``stdout``/``error``/``tool_calls``/``timed_out``/``seconds``
    (the timing): the run; ``observation``: the user turn sent back (None after a final answer)."""

    raw: str
    thought: str | None = None
    code: str | None = None
    parse_error: bool = False
    stdout: str = ""
    error: str | None = None
    tool_calls: list[Any] = field(default_factory=list)
    timed_out: bool = False
    seconds: float = 0.0
    vote: dict[str, Any] | None = None  # SAG's vote summary
    is_final: bool | None = None
    restarted: bool | None = None  # the sandbox worker was restarted during the step
    observation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # stored keys this version does not know, kept

    @classmethod
    def unparsed(cls, raw: str, vote: dict[str, Any] | None = None) -> Step:
        """A step whose text held no code block: the observation says how to write one."""
        return cls(raw=raw, parse_error=True, vote=vote, observation=f"Observation: {PARSE_ERROR_OBSERVATION}")

    @classmethod
    def ran(cls, raw: str, action: Action, result: Any, vote: dict[str, Any] | None = None) -> Step:
        """A parsed step and its sandbox result; a clean final answer gets no observation."""
        final = bool(result.is_final and not result.error)
        return cls(raw=raw, thought=action.thought, code=action.code, stdout=result.stdout, error=result.error,
                   tool_calls=result.tool_calls, timed_out=result.timed_out, seconds=result.seconds, vote=vote,
                   is_final=result.is_final, restarted=bool(getattr(result, "restarted", False)),
                   observation=None if final else observation(result.stdout, result.error))  # fmt: skip

    def action_text(self) -> str:
        """The assistant turn: the canonical action, or the raw text when it did not parse."""
        if self.parse_error or self.code is None:
            return self.raw.strip() or "(empty)"
        return format_action(self.thought or "", self.code)

    def to_messages(self) -> list[dict[str, str]]:
        """The chat turns of this step: the assistant's action, then the observation as a user turn."""
        turns = [{"role": "assistant", "content": self.action_text()}]
        if self.observation:
            turns.append({"role": "user", "content": self.observation})
        return turns

    def to_dict(self) -> dict[str, Any]:
        """The stored form (``trajectories.steps``): keys in the order earlier versions wrote them."""
        out: dict[str, Any] = {}
        for name in _KNOWN:
            value = getattr(self, name)
            if name not in _OPTIONAL or value is not None:
                out[name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        """A stored step (any earlier version's dict) as a Step; unknown keys kept in ``extra``."""
        known = {k: data[k] for k in _KNOWN if k in data}
        known.setdefault("raw", "")
        known.setdefault("parse_error", known.get("code") is None)
        known.setdefault("tool_calls", [])
        return cls(**known, extra={k: v for k, v in data.items() if k not in _KNOWN})


def messages_of(steps: list[Step]) -> list[dict[str, str]]:
    """The chat turns of a list of steps (what follows the system prompt and the question)."""
    return [m for step in steps for m in step.to_messages()]


def steps_of(row: dict[str, Any]) -> list[Step]:
    """A stored trajectory row's steps (parsed JSON or the column's text) as Steps."""
    import json

    steps = row.get("steps") or []
    if isinstance(steps, str):
        steps = json.loads(steps)
    return [s if isinstance(s, Step) else Step.from_dict(s) for s in steps]
