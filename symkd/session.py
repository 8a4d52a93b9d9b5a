"""A teacher session: every stage of a pipeline sends its requests through one of these.

The session loads an in-process teacher at most once per run (and not at all when the cache
answers everything), runs every stage on one event loop (an API teacher's connections are
bound to the loop that opened them), works inside Jupyter (see :mod:`symkd.aio`), and keeps
per-stage totals for the pipeline's report. Pipelines never join ``run_items`` with
``responses`` themselves: :meth:`TeacherSession.ask` returns a
:class:`~symkd.generation.GenerationResult` that iterates ``(item id, request, response)``.
"""

from __future__ import annotations

from typing import Any, Sequence

from symkd.aio import LoopRunner
from symkd.generation import GenerationResult, agenerate
from symkd.scale.context import current_executor
from symkd.store import cache
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.options import TeacherOptions, as_options
from symkd.teachers.registry import load_teacher, teacher_spec
from symkd.teachers.spec import TeacherSpec
from symkd.teachers.messages import Request

STAGE_FIELDS = ("requests", "done", "cached", "failed", "seconds")


class TeacherSession:
    """Sends each stage's requests through the cache in ``store``.

    ``teacher`` is a spec string, a :class:`~symkd.teachers.spec.TeacherSpec`, a Teacher or a
    LangChain chat model; it is parsed once, here (a TeacherSpec is not parsed again). An API
    teacher instance passed in is closed with the session (its connections belong to the
    session's loop); a local one is left loaded for its owner.
    """

    def __init__(
        self,
        teacher: Any,
        store: Store,
        options: TeacherOptions | dict[str, Any] | None = None,
        progress: bool = True,
        executor: Any = None,
    ):
        self.options = as_options(options).given()
        self.spec: TeacherSpec = teacher_spec(teacher, **self.options)
        self.heavy = self.spec.heavy
        #: where requests are answered (symkd.scale); None, the default, is this process
        self.executor = executor if executor is not None else current_executor()
        self.store = store
        self.progress = progress
        self.loaded: Teacher | None = self.spec.teacher
        self.owned = False
        self.stages: dict[str, dict[str, float]] = {}
        self.runner = LoopRunner()

    def _target(self, requests: Sequence[Request]) -> TeacherSpec | Teacher:
        """The loaded teacher, or the spec when the cache has every answer (or for API teachers)."""
        if self.loaded is not None or not self.heavy:
            return self.loaded or self.spec
        identity = self.spec.identity
        if identity is not None:
            keys = {r.cache_key(*identity) for r in requests}
            if len(cache.answered_keys(self.store, list(keys))) == len(keys):
                return self.spec
        self.loaded, self.owned = load_teacher(self.spec), True  # a TeacherSpec: nothing is parsed again
        return self.loaded

    def ask(self, requests: Sequence[Request], *, kind: str, config: dict, stage: str) -> GenerationResult:
        """Answer ``requests`` (cached), add the counts to ``stage``'s totals, return the result."""
        target = self.executor.teacher(self.spec, self.options, self.store) if self.executor else self._target(requests)
        # the spec carries the options: generation parses and builds nothing the spec already knows
        run = agenerate(target, requests, self.store, kind=kind, config=config, progress=self.progress, stage=stage)
        result = self.runner.run(run)
        totals = self.stages.setdefault(stage, dict.fromkeys(STAGE_FIELDS, 0))
        values = dict(zip(STAGE_FIELDS, (result.total, result.done, result.cached, result.failed, result.seconds)))
        for name, value in values.items():
            totals[name] = round(totals[name] + value, 3)
        return result

    def close(self) -> None:
        try:
            if self.loaded is not None and (self.owned or not self.heavy):
                self.runner.run(self.loaded.aclose())
                self.loaded = None
        finally:
            self.runner.close()

    def __enter__(self) -> "TeacherSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_heavy(teacher: Any) -> bool:
    """Whether the teacher runs in-process (load it once); a bad spec is a UserError here."""
    return teacher_spec(teacher).heavy



