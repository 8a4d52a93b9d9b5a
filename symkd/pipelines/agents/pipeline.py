"""The agents pipeline's jobs: teacher trajectories, gold-rationale demonstrations, evaluation."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents import tables
from symkd.pipelines.agents.agent import continuation_renderer, cot_answers, first_paragraph, solve
from symkd.pipelines.agents.gsm8k import extract_answer, answers_match, read_tasks
from symkd.pipelines.agents.loop import AgentConfig
from symkd.pipelines.agents.tools import describe
from symkd.store.db import Store


def _config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _rows(episodes: Sequence[Any], *, source: str, model: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    digest = _config_digest(config)
    rows = []
    for e in episodes:
        if e.error is not None:
            continue
        tid = tables.trajectory_id(source, model, f"{e.template_id}@{e.template_version}", e.task.id, e.sample, digest)
        rows.append(e.to_row(source=source, model=model, trajectory_id=tid, config=config))
    return rows


def guidance_from(strategies_db: Path | None) -> Callable[[str], str] | None:
    """The ``strategies`` context provider (another pipeline registers it), or None."""
    if strategies_db is None:
        return None
    from symkd.plugins import CONTEXT_PROVIDERS

    if not Path(strategies_db).is_file():
        raise UserError(f"{strategies_db}: no such strategies database")
    return CONTEXT_PROVIDERS.load("strategies")(strategies_db)


def generate_trajectories(teacher: str, db: Path, data: Path, *, config: AgentConfig, samples: int = 1,
                          first_thought: bool = False, limit: int | None = None, tools: Sequence[Any] = (),
                          teacher_options: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """The teacher solves every task ``samples`` times; trajectories + verifier decisions go to ``db``."""
    from symkd.critics.base import apply_critic
    from symkd.pipelines.agents.verifier import VerifierCritic
    from symkd.session import TeacherSession

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
        rows = _rows(episodes, source="teacher", model=teacher, config=record)
        tables.write_trajectories(store, rows)
        ids = [r["id"] for r in rows]
        verdict = apply_critic(store, VerifierCritic(), where=f"id in ({','.join('?' * len(ids))})", params=ids) if ids else {}
    return {"tasks": len(tasks), "episodes": len(episodes), "written": len(rows), "failed": stats.failed,
            "correct": sum(r["correct"] for r in rows), "verifier": verdict, "steps": stats.per_step,
            "seconds": round(time.monotonic() - started, 2), "db": str(db)}  # fmt: skip


def convert_gold_rationales(db: Path, data: Path, *, limit: int | None = None, sandbox: str = "bwrap",
                            progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """GSM8K worked solutions -> CodeAct trajectories (source ``gold-rationales``), verified in the sandbox."""
    from symkd.pipelines.agents.agent import base_messages
    from symkd.pipelines.agents.gold import SOURCE, convert
    from symkd.prompts import get_template

    tasks = read_tasks(data, limit=limit)
    template = get_template("agents/codeact")
    rows, counts = convert(tasks, lambda t: base_messages(template, t.question, few_shot=False), template=template,
                           sandbox_mode=sandbox, progress=progress)  # fmt: skip
    for row in rows:
        row["id"] = tables.trajectory_id(SOURCE, SOURCE, template.ref, row["task_id"], 0)
        row["source"] = SOURCE
    with Store(db) as store:
        tables.write_trajectories(store, rows)
    return {**counts, "rate": round(counts["converted"] / max(counts["tasks"], 1), 4), "db": str(db)}


def evaluate(teacher: str, data: Path, db: Path, *, mode: str = "agent", config: AgentConfig | None = None,
             limit: int | None = None, tools: Sequence[Any] = (), strategies: Path | None = None,
             teacher_options: dict[str, Any] | None = None, out: Path | None = None,
             progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Accuracy (and, as an agent, steps and error rates) on a task file; per-item JSONL to ``out``."""
    from symkd.session import TeacherSession

    if mode not in ("agent", "cot"):
        raise UserError(f"--mode must be agent or cot, not {mode!r}")
    tasks = read_tasks(data, limit=limit)
    guidance = guidance_from(strategies)
    config = config or AgentConfig()
    started = time.monotonic()
    with Store(db) as store, TeacherSession(teacher, store, options=teacher_options, progress=progress) as session:
        tables.ensure(store)
        if mode == "cot":
            items = _eval_cot(session, tasks, guidance)
        else:
            episodes, _ = solve(session, tasks, config, tools=tools, guidance=guidance, stage="eval", progress=progress)
            record = {**config.as_dict(), "tools": describe(tools), "strategies": str(strategies) if strategies else None}
            items = _rows(episodes, source="eval", model=teacher, config=record)
            tables.write_trajectories(store, items)
    metrics = summarize(items, mode)
    metrics.update(teacher=teacher, data=str(data), mode=mode, seconds=round(time.monotonic() - started, 2),
                   config=config.as_dict() if mode == "agent" else None, strategies=str(strategies) if strategies else None)  # fmt: skip
    if out is not None:
        from symkd.jsonio import atomic_write

        with atomic_write(out) as fh:
            for item in items:
                fh.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
    return metrics


def _eval_cot(session: Any, tasks: Sequence[Any], guidance: Any) -> list[dict[str, Any]]:
    answers = cot_answers(session, tasks, guidance=guidance, stage="eval cot")
    items = []
    for t in tasks:
        text = answers.get(t.id)
        predicted = extract_answer(text) if text is not None else None
        items.append({"task_id": t.id, "question": t.question, "reference": t.answer, "completion": text,
                      "final_answer": predicted, "correct": int(answers_match(predicted, t.answer) if predicted else 0)})  # fmt: skip
    return items


def summarize(items: Sequence[dict[str, Any]], mode: str) -> dict[str, Any]:
    n = len(items)
    metrics: dict[str, Any] = {"items": n, "accuracy": round(sum(i["correct"] for i in items) / n, 4) if n else 0.0}
    if mode == "agent" and n:
        steps = sum(i["n_steps"] for i in items)
        parsed = steps - sum(i["parse_errors"] for i in items)
        metrics.update(
            avg_steps=round(steps / n, 3),
            parse_error_rate=round(sum(i["parse_errors"] for i in items) / max(steps, 1), 4),
            exec_error_rate=round(sum(i["exec_errors"] for i in items) / max(parsed, 1), 4),
            step_limit_rate=round(sum(i["hit_step_limit"] for i in items) / n, 4),
            answered_rate=round(sum(i["final_answer"] is not None for i in items) / n, 4),
            completion_tokens=sum(i["completion_tokens"] for i in items),
        )
    return metrics
