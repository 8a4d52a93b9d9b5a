"""GSM8K evaluation of a model answering by chain of thought or as an agent.

Every evaluation is stored (``gsm8k_evaluations``) with its per-item predictions
(``gsm8k_predictions``), so students can be compared item by item (:func:`paired_outcomes`,
:func:`symkd.stats.mcnemar_exact`). An item whose model request failed counts as wrong and
stays in the denominator (``error`` says why); an item is *answered* when a final answer
could be read from it. Accuracy comes with its 95 % Wilson interval.

Self-consistency (``votes=K``, agents): K episodes per task sampled at the config's temperature (0.7 when it is 0);
the task's answer is the most frequent numeric final answer (ties: the earliest sample), its
row stored with ``sample = -1``. The report then gives ``maj@K``, the mean accuracy of a
single sample and ``pass@K`` (any sample right).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.plugins import context_from
from symkd.pipelines.agents import tables
from symkd.pipelines.agents.agent import cot_completions, episode_rows, solve
from symkd.pipelines.agents.gsm8k import Task, answers_match, extract_answer, read_tasks, to_number
from symkd.pipelines.agents.loop import AgentConfig
from symkd.stats import wilson_interval
from symkd.store.db import Store

VOTE_SAMPLE = -1  # the sample index of a task's majority-vote row


def evaluation_id(model: Any, data: Path, mode: str, setup: dict[str, Any]) -> str:
    """The evaluation's key: ``model`` is the session's cache identity (weights digest and dtype
    included), so a float32 and a bfloat16 run of one student, or a student retrained at the same
    path, are two evaluations, not one that the later run overwrites."""
    blob = json.dumps([model, str(data), mode, setup], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cot_predictions(session: Any, tasks: Sequence[Task], guidance: Any, max_tokens: int) -> list[dict[str, Any]]:
    """One prediction row per task from greedy chain-of-thought answers."""
    answers = cot_completions(session, tasks, guidance=guidance, max_tokens=max_tokens, stage="eval cot")
    rows = []
    for t in tasks:
        text, finished, error = answers.get(t.id, (None, False, "no answer stored"))
        predicted = extract_answer(text, finished=finished) if text is not None else None
        rows.append({"task_id": t.id, "sample": 0, "prediction": predicted, "answered": int(predicted is not None),
                     "correct": int(predicted is not None and answers_match(predicted, t.answer)),
                     "finished": int(finished), "error": error, "completion": text, "trajectory_id": None})  # fmt: skip
    return rows


def episode_predictions(episodes: Sequence[Any], ids: dict[str, str]) -> list[dict[str, Any]]:
    """One prediction row per episode (failed requests included, as wrong)."""
    return [{"task_id": e.task.id, "sample": e.sample, "prediction": e.final_answer, "answered": int(e.final_answer is not None),
             "correct": int(e.error is None and e.correct), "finished": int(e.final_answer is not None),
             "error": e.error, "completion": None, "trajectory_id": ids.get(e.item_id)} for e in episodes]  # fmt: skip


def majority_rows(rows: Sequence[dict[str, Any]], tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """A ``sample = -1`` row per task: the most frequent numeric answer among its samples."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_task[row["task_id"]].append(row)
    out = []
    for t in tasks:
        answers = [r["prediction"] for r in sorted(by_task[t.id], key=lambda r: r["sample"]) if r["prediction"] is not None]
        keyed = {}
        for a in answers:
            keyed.setdefault(_vote_key(a), a)
        counts = Counter(_vote_key(a) for a in answers)
        winner = keyed[counts.most_common(1)[0][0]] if counts else None
        out.append({"task_id": t.id, "sample": VOTE_SAMPLE, "prediction": winner, "answered": int(winner is not None),
                    "correct": int(winner is not None and answers_match(winner, t.answer)), "finished": int(winner is not None),
                    "error": None, "completion": json.dumps(dict(counts)), "trajectory_id": None})  # fmt: skip
    return out


def _vote_key(answer: str) -> str:
    number = to_number(answer)
    return str(answer).strip() if number is None else format(number.normalize(), "f")


def primary_rows(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """task id -> the row that scores the task: its vote row where there is one, else sample 0."""
    chosen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["sample"] == VOTE_SAMPLE or (row["sample"] == 0 and chosen.get(row["task_id"], {}).get("sample") != VOTE_SAMPLE):
            chosen[row["task_id"]] = row
    return chosen


def paired_outcomes(rows: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """task id -> right or wrong (see :func:`primary_rows`)."""
    return {k: bool(v["correct"]) for k, v in primary_rows(rows).items()}


def summarize(rows: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]], mode: str) -> dict[str, Any]:
    """Accuracy (+ Wilson interval), answered and failed rates; agent step statistics from ``items``."""
    primary = list(primary_rows(rows).values())
    n, k = len(primary), sum(r["correct"] for r in primary)
    metrics: dict[str, Any] = {"items": n, "correct": k, "accuracy": round(k / n, 4) if n else 0.0,
                               "ci95": list(wilson_interval(k, n)),
                               "answered_rate": round(sum(r["answered"] for r in primary) / max(len(primary), 1), 4),
                               "failed_requests": sum(1 for r in rows if r["error"])}  # fmt: skip
    samples = [r for r in rows if r["sample"] != VOTE_SAMPLE]
    if len(samples) > n:
        metrics["sample_accuracy"] = round(sum(r["correct"] for r in samples) / len(samples), 4)
        hit = {r["task_id"] for r in samples if r["correct"]}
        metrics["pass_at_k"] = round(len(hit) / max(n, 1), 4)
    if mode == "agent" and items:
        steps = sum(i["n_steps"] for i in items)
        parsed = steps - sum(i["parse_errors"] for i in items)
        metrics.update(avg_steps=round(steps / len(items), 3),
                       parse_error_rate=round(sum(i["parse_errors"] for i in items) / max(steps, 1), 4),
                       exec_error_rate=round(sum(i["exec_errors"] for i in items) / max(parsed, 1), 4),
                       step_limit_rate=round(sum(i["hit_step_limit"] for i in items) / len(items), 4),
                       completion_tokens=sum(i["completion_tokens"] for i in items))  # fmt: skip
    return metrics


def run_agent(session: Any, tasks: Sequence[Task], config: AgentConfig, *, votes: int, tools: Sequence[Any],
              guidance: Any, model: str, record: dict[str, Any], progress: bool) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """(prediction rows, trajectory rows) of agent episodes; ``votes`` > 1 samples and votes."""
    samples = max(votes, 1)
    episodes, _ = solve(session, tasks, config, samples=samples, tools=tools, guidance=guidance, stage="eval",
                        progress=progress)  # fmt: skip
    items = episode_rows(episodes, source="eval", model=model, config=record)
    ids = {f"{r['task_id']}#{r['sample']}": r["id"] for r in items}
    rows = episode_predictions(episodes, ids)
    if samples > 1:
        rows += majority_rows(rows, tasks)
    return rows, items


def evaluate(teacher: str, data: Path, db: Path, *, mode: str = "agent", config: AgentConfig | None = None,
             limit: int | None = None, tools: Sequence[Any] = (), context: str | None = None, votes: int = 0,
             teacher_options: dict[str, Any] | None = None, out: Path | None = None,
             progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Accuracy on a task file, stored with per-item predictions; JSONL of the items to ``out``.

    ``votes=K`` samples K episodes per task at ``config.temperature`` (0.7 when it is 0).
    """
    from symkd.pipelines.agents.tools import describe
    from symkd.session import TeacherSession

    if mode not in ("agent", "cot"):
        raise UserError(f"--mode must be agent or cot, not {mode!r}")
    if votes < 0 or votes == 1 or (votes and mode != "agent"):
        raise UserError("--votes must be 0 (off) or at least 2, and works in agent mode")
    tasks = read_tasks(data, limit=limit)
    guidance = context_from(context)
    config = config or AgentConfig()
    if votes:
        config = config.model_copy(update={"temperature": config.temperature or 0.7})
    record = {**config.as_dict(), "tools": describe(tools), "context": str(context) if context else None,
              "votes": votes, "limit": limit}  # fmt: skip
    started = time.monotonic()
    with Store(db) as store, TeacherSession(teacher, store, options=teacher_options, progress=progress) as session:
        tables.ensure(store)
        if mode == "cot":
            rows, items = cot_predictions(session, tasks, guidance, config.max_tokens), []
        else:
            rows, items = run_agent(session, tasks, config, votes=votes, tools=tools, guidance=guidance, model=teacher,
                                    record=record, progress=progress)  # fmt: skip
            tables.write_trajectories(store, items)
        metrics = summarize(rows, items, mode)
        model_key = session.spec.identity or [str(teacher), teacher_options]
        eval_id = evaluation_id(model_key, data, mode, record if mode == "agent" else {"max_tokens": config.max_tokens, "limit": limit})
        metrics.update(evaluation_id=eval_id, teacher=teacher, data=str(data), mode=mode, votes=votes,
                       seconds=round(time.monotonic() - started, 2), config=record if mode == "agent" else None,
                       context=str(context) if context else None)  # fmt: skip
        tables.write_evaluation(store, {"id": eval_id, "model": teacher, "data": str(data), "mode": mode, "n": metrics["items"],
                                        "correct": metrics["correct"], "accuracy": metrics["accuracy"],
                                        "ci95_low": metrics["ci95"][0], "ci95_high": metrics["ci95"][1],
                                        "answered_rate": metrics["answered_rate"], "config": record, "metrics": metrics},
                                rows)  # fmt: skip
    _record_in_card(teacher, data, mode, votes, limit, metrics)
    if out is not None:
        _write_items(out, items or rows)
    return metrics


_CARD_METRICS = ("accuracy", "items", "correct", "answered_rate", "pass_at_k", "sample_accuracy", "avg_steps",
                 "parse_error_rate", "exec_error_rate", "step_limit_rate")  # fmt: skip


def _record_in_card(teacher: Any, data: Path, mode: str, votes: int, limit: int | None, metrics: dict[str, Any]) -> None:
    """A trained student's card and training.json get this evaluation (a teacher spec: nothing)."""
    from symkd.students.card import record_if_student

    name = f"gsm8k-{mode}" + (f"-maj{votes}" if votes else "")
    record_if_student(str(teacher), name, {k: metrics[k] for k in _CARD_METRICS if metrics.get(k) is not None},
                      dataset=str(data), details={"votes": votes, "limit": limit, "ci95": metrics.get("ci95")})  # fmt: skip


def _write_items(out: Path, items: Sequence[dict[str, Any]]) -> None:
    from symkd.jsonio import atomic_write

    with atomic_write(out) as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
