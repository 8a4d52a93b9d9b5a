"""The Stage contract: a pipeline step that asks the teacher one request per row and parses the answer.

A pipeline author writes a :class:`Stage` subclass with

* ``kind``: the run kind written to the run log (``"commonsense-inferences"``),
* ``name``: the stage's default label in the session's totals and progress bar,
* ``requests(rows)``: exactly one :class:`~symkd.teachers.messages.Request` per row, in row order
  (a step that wants several answers per input makes one row per answer),
* ``parse(row, response)``: what the answer means for that row, or None when it is unusable.
  ``parse`` is only called for a response that arrived (``response.ok``); it may still have no
  completions, and ``parse`` must then return its "nothing usable" value.

:func:`run_stage` sends the requests through a :class:`~symkd.session.TeacherSession` (so the
cache answers what it has) and yields one :class:`Answer` per row; callers never pair requests
with responses by item id themselves. The request's cache key is the request's own, so turning
a hand-made builder into a Stage keeps every stored answer reachable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Iterator, Sequence, TypeVar

from symkd.teachers.messages import Request, Response

if TYPE_CHECKING:
    from symkd.generation import GenerationResult
    from symkd.session import TeacherSession

Row = TypeVar("Row")
Out = TypeVar("Out")


class Stage(ABC, Generic[Row, Out]):
    """One request per row, and a parser for its response (see the module docstring)."""

    kind: str = "generate"
    name: str = "stage"

    @abstractmethod
    def requests(self, rows: Sequence[Row]) -> list[Request]:
        """One request per row, in row order."""

    @abstractmethod
    def parse(self, row: Row, response: Response) -> Out | None:
        """The parsed answer for ``row``, or None when the teacher's answer is unusable."""


@dataclass
class Answer(Generic[Row, Out]):
    """One row's outcome: its request, cache key, stored response (None when there is none) and parse."""

    row: Row
    request: Request
    key: str
    response: Response | None
    parsed: Out | None

    @property
    def answered(self) -> bool:
        """Whether a response arrived (a failed send has one with ``ok`` False)."""
        return self.response is not None and self.response.ok


class StageRun(Generic[Row, Out]):
    """The rows of one :func:`run_stage` call with the session's result; iterates :class:`Answer`."""

    def __init__(self, stage: Stage[Row, Out], rows: Sequence[Row], requests: Sequence[Request], result: "GenerationResult"):
        self.stage, self.rows, self.requests, self.result = stage, rows, requests, result

    def __iter__(self) -> Iterator[Answer[Row, Out]]:
        keys = self.result.keys()
        for row, (item, request, response) in zip(self.rows, self.result):
            ok = response is not None and response.ok
            yield Answer(row, request, keys[item], response, self.stage.parse(row, response) if ok else None)

    def __len__(self) -> int:
        return len(self.rows)


def run_stage(
    session: "TeacherSession",
    stage: Stage[Row, Out],
    rows: Sequence[Row],
    *,
    config: dict[str, Any] | None = None,
    label: str | None = None,
) -> StageRun[Row, Out]:
    """Ask ``session`` the stage's requests for ``rows`` (cached) and return the per-row answers.

    ``label`` names the stage in the session's totals (default ``stage.name``); ``config`` goes
    to the run log with ``stage.kind``.
    """
    rows = list(rows)
    requests = stage.requests(rows)
    if len(requests) != len(rows):
        raise ValueError(f"stage {stage.name!r} made {len(requests)} requests for {len(rows)} rows (one per row)")
    result = session.ask(requests, kind=stage.kind, config=config or {}, stage=label or stage.name)
    return StageRun(stage, rows, requests, result)
