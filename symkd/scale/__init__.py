"""Optional executors: where a stage's work runs. Nothing here imports Ray unless asked for.

symkd does not schedule work itself; an executor hands it to an engine that does:

* ``local`` (the default, represented by ``None``): today's single-process path, unchanged.
* ``ray``: :class:`symkd.scale.ray_executor.RayExecutor` shards each ``session.ask`` across
  Ray actors (a teacher loaded once per actor) and scores stateless critics' batches in
  actors; the driver stays the only writer of the run database.

Use it from Python with a scope (every :class:`~symkd.session.TeacherSession` and
:func:`~symkd.critics.base.apply_critic` inside picks it up)::

    from symkd.scale import executor_scope
    with executor_scope({"executor": "ray", "workers": 4}):
        distill_commonsense("openai:gpt-4o-mini", "run.db", n_events=1000)

or pass ``executor=`` to ``TeacherSession`` / ``apply_critic`` directly. A pipeline with work
of its own (an agent's episodes) maps a function that loads something once per worker::

    executor = current_executor()          # None: do it here, as before
    results = executor.map_batches(make_runner, batches, key="agents:episodes") if executor else ...

where ``make_runner`` is a picklable zero-argument callable returning ``fn(batch) -> list``.
"""

from __future__ import annotations

from symkd.scale.context import current_executor, use_executor
from symkd.scale.executor import Executor, build_executor, executor_scope
from symkd.scale.options import ExecutorOptions

__all__ = ["Executor", "ExecutorOptions", "build_executor", "current_executor", "executor_scope", "use_executor"]
