"""The agents pipeline's jobs: teacher trajectories, gold-rationale demonstrations, evaluation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents import tables
from symkd.pipelines.agents.agent import continuation_renderer, cot_answers, episode_rows, first_paragraph, solve
from symkd.pipelines.agents.evaluation import evaluate as _evaluate
from symkd.pipelines.agents.gsm8k import read_tasks
from symkd.pipelines.agents.options import AgentConfig, agent_config
from symkd.pipelines.agents.tools import describe
from symkd.store.db import Store
from symkd.teachers.registry import teacher_spec

__all__ = ["convert_gold_rationales", "evaluate", "generate_trajectories"]


def evaluate(teacher: Any, data: Path, db: Path, config: AgentConfig | None = None, **options: Any) -> dict[str, Any]:
    """:func:`symkd.pipelines.agents.evaluation.evaluate` for any teacher value (a spec string,
    a TeacherSpec, a Teacher or a LangChain chat model), parsed once here. ``options`` are that
    function's keywords or :class:`AgentConfig` fields overriding ``config`` (``max_steps=3``)."""
    overrides = {k: options.pop(k) for k in list(options) if k in AgentConfig.model_fields}
    return _evaluate(teacher_spec(teacher), data, db, config=agent_config(config, overrides, where="evaluate"), **options)


def generate_trajectories(teacher: Any, db: Path, data: Path, config: AgentConfig | None = None, *, samples: int = 1,
                          first_thought: bool = False, limit: int | None = None, tools: Sequence[Any] = (),
                          teacher_options: dict[str, Any] | None = None, progress: bool = True,
                          **overrides: Any) -> dict[str, Any]:  # fmt: skip
    """The teacher solves every task ``samples`` times; trajectories + verifier decisions go to ``db``.

    ``teacher``: a spec string, a TeacherSpec, a Teacher or a LangChain chat model; it is parsed
    (and a LangChain factory called) once for the whole run. ``config`` (default
    :class:`AgentConfig`) with ``overrides``, its fields, applied (``max_steps=3, sandbox="rlimit"``).
    """
    from symkd.critics.base import apply_critic
    from symkd.pipelines.agents.verifier import VerifierCritic
    from symkd.session import TeacherSession

    config = agent_config(config, overrides, where="generate_trajectories")
    teacher = teacher_spec(teacher)
    tasks = read_tasks(data, limit=limit)
    started = time.monotonic()
    continuation = continuation_renderer(teacher) if first_thought else None
    record = {**config.as_dict(), "tools": describe(tools), "first_thought": first_thought, "samples": samples}
    with Store(db) as store, TeacherSession(teacher, store, options=teacher_options, progress=progress) as session:
        tables.ensure(store)
        prefixes = None
        if first_thought:
            prefixes = {k: first_paragraph(v) for k, v in cot_answers(session, tasks).items()}
        episodes, stats = solve(session, tasks, config, samples=samples, tools=tools, prefixes=prefixes,
                                continuation=continuation, progress=progress)  # fmt: skip
        rows = episode_rows(episodes, source="teacher", model=teacher, config=record)
        tables.write_trajectories(store, rows)
        ids = [r["id"] for r in rows]
        verdict = apply_critic(store, VerifierCritic(), where=f"id in ({','.join('?' * len(ids))})", params=ids) if ids else {}
    return {"tasks": len(tasks), "episodes": len(episodes), "written": len(rows), "failed": stats.failed,
            "correct": sum(r["correct"] for r in rows), "verifier": verdict, "steps": stats.per_step,
            "seconds": round(time.monotonic() - started, 2), "db": str(db)}  # fmt: skip


def convert_gold_rationales(db: Path, data: Path, *, limit: int | None = None, sandbox: str = "bwrap",
                            progress: bool = True, variants: int = 0, exclude: Path | None = None,
                            seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """GSM8K worked solutions -> CodeAct trajectories (source ``gold-rationales``), verified in the sandbox.

    ``variants=K``: also up to K program variants per problem (source ``gold-variants``, see
    :mod:`symkd.pipelines.agents.variants`), deterministic given ``seed``. ``exclude``: a JSONL of
    questions (a test set); a task or variant whose normalized question is there is dropped.
    """
    from symkd.pipelines.agents.agent import base_messages
    from symkd.pipelines.agents.gold import SOURCE, convert
    from symkd.pipelines.agents.variants import drop_excluded, make_variants
    from symkd.prompts import get_template

    if variants < 0:
        raise UserError(f"--variants must be 0 (off) or more, not {variants}")
    tasks, excluded, dropped = drop_excluded(read_tasks(data, limit=limit), exclude)
    template = get_template("agents/codeact")
    base = lambda t: base_messages(template, t.question, few_shot=False)  # noqa: E731
    rows, counts = convert(tasks, base, template=template, sandbox_mode=sandbox, progress=progress)
    for row in rows:
        row["id"] = tables.trajectory_id(SOURCE, SOURCE, template.ref, row["task_id"], 0)
        row["source"] = SOURCE
    report = {**counts, "rate": round(counts["converted"] / max(counts["tasks"], 1), 4), "excluded": dropped}
    if variants:
        extra, report["variants"] = make_variants(tasks, base, template=template, k=variants, seed=seed, exclude=excluded,
                                                  sandbox_mode=sandbox, progress=progress)  # fmt: skip
        rows += extra
    with Store(db) as store:
        tables.write_trajectories(store, rows)
    return {**report, "db": str(db)}
