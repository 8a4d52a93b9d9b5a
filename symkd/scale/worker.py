"""What runs inside a Ray actor: a teacher loaded once, or a batch function built once.

Plain classes (wrapped with ``ray.remote`` by the executor), so they can be tested without
Ray and this module imports no Ray. A teacher worker answers one chunk of keyed requests
at a time on its own event loop (an API teacher's connections live on it), writes every
answer to its shard file as it arrives, and returns the rows.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Sequence

from symkd.teachers.messages import Request


class TeacherWorker:
    """One teacher per actor; ``fault_after`` (tests) makes the process die after that many answers.

    ``spec`` is the spec text (parsed here again) or a pickled TeacherSpec holding a chat model
    object; ``imports`` are ``(module, folder)`` pairs the driver imported the teacher's code from
    (a LangChain factory next to the user), made importable here first, from ``folder`` when the
    worker cannot import them otherwise.
    """

    def __init__(self, spec: str | bytes, options: dict[str, Any], shard_path: str, fault_after: int | None = None,
                 imports: Sequence[tuple[str, str]] = ()):  # fmt: skip
        from symkd.aio import LoopRunner
        from symkd.scale.shards import ShardWriter
        from symkd.teachers.registry import load_teacher

        _import_all(imports)
        self.teacher = load_teacher(pickle.loads(spec) if isinstance(spec, bytes) else spec, **options)
        self.runner = LoopRunner()
        self.shard = ShardWriter(shard_path)
        self.shard_path = shard_path
        self.fault_after = fault_after
        self.answered = 0

    def preflight(self) -> dict[str, Any]:
        """Load the model / reach the server now, so a broken teacher fails before any work."""
        self.runner.run(self.teacher.preflight())
        return {"pid": os.getpid(), "shard": self.shard_path, "node": os.uname().nodename}

    def answer(self, chunk: Sequence[tuple[str, Request]]) -> list[dict]:
        """Response rows (:func:`symkd.store.cache.response_row`) for ``(key, request)`` pairs."""
        from symkd.store.cache import response_row

        key_of = {id(request): key for key, request in chunk}
        rows: list[dict] = []

        def on_response(request: Request, response: Any) -> None:
            row = response_row(key_of[id(request)], response)
            self.shard.add(row)
            rows.append(row)
            self.answered += 1
            if self.fault_after is not None and self.answered >= self.fault_after:
                self.shard.flush()
                os._exit(1)  # a lost worker, as a crash or a preempted node would leave it

        self.runner.run(self.teacher.agenerate([request for _, request in chunk], on_response))
        self.shard.flush()
        return rows

    def close(self) -> None:
        try:
            self.runner.run(self.teacher.aclose())
        finally:
            self.shard.close()
            self.runner.close()


def _import_all(imports: Sequence[tuple[str, str]]) -> None:
    from symkd.errors import TeacherUnavailable
    from symkd.teachers.langchain_chat import import_nearby

    for module, folder in imports:
        try:
            import_nearby(module, folder)
        except ModuleNotFoundError as exc:
            raise TeacherUnavailable(f"ray worker on {os.uname().nodename}: cannot import {module} ({exc}; the driver "
                                     f"found it in {folder}): install it on every node or put it on a shared "
                                     "path") from None  # fmt: skip


class BatchWorker:
    """``factory()`` once per actor; then ``fn(batch)`` per call (a critic's score, an episode)."""

    def __init__(self, factory: Any):
        self.fn = factory()

    def run(self, batch: Sequence[Any]) -> list[Any]:
        return list(self.fn(batch))

    def close(self) -> None:
        self.fn = None
