"""CodeAct actions: parsing what the model wrote, and the observation that goes back to it.

A step is ``Thought: ...`` followed by one fenced Python code block. The model's text is cut
after the first code block (a small model often goes on to invent its own observation), and
an unclosed block at the end of the generation is accepted (the stop string may have cut
the closing fence). Text without a code block is a parse failure; the episode goes on with
an observation saying how to write a step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S | re.I)
_THOUGHT = re.compile(r"^\s*(?:Thought\s*:)?\s*", re.I)

#: what is shown to the model at most per observation (the rest is cut, with a note)
OBSERVATION_CHARS = 1500

PARSE_ERROR_OBSERVATION = (
    "Error: no Python code block found. Write 'Thought:' and then exactly one code block "
    "starting with ```python and ending with ```."
)


@dataclass(frozen=True)
class Action:
    """One parsed step: the thought, the code to run, and the text as kept in the transcript."""

    thought: str
    code: str
    text: str  # what goes into the conversation as the assistant's turn


def parse_action(raw: str) -> Action | None:
    """The step the model wrote, or None when it holds no (non-empty) Python code block."""
    match = _BLOCK.search(raw)
    if match is None or not match.group(1).strip():
        return None
    thought = _THOUGHT.sub("", raw[: match.start()], count=1).strip()
    code = match.group(1).strip("\n")
    return Action(thought=thought, code=code, text=format_action(thought, code))


def format_action(thought: str, code: str) -> str:
    """The canonical assistant turn: ``Thought: ...`` then the fenced code."""
    return f"Thought: {thought.strip()}\n```python\n{code.strip(chr(10))}\n```"


def observation(stdout: str, error: str | None) -> str:
    """The user turn that reports a step's output (and its error, when it failed)."""
    parts = []
    if stdout.strip():
        parts.append(stdout.rstrip())
    if error:
        parts.append(error.strip().splitlines()[-1] if len(error) > OBSERVATION_CHARS else error.strip())
    body = "\n".join(parts) if parts else "(no output; print() what you want to see)"
    if len(body) > OBSERVATION_CHARS:
        body = body[:OBSERVATION_CHARS] + f"\n... ({len(body) - OBSERVATION_CHARS} more characters cut)"
    return f"Observation: {body}"
