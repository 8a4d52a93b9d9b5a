"""Verified self-training for agents (rejection sampling / STaR; I2D2's self-imitation, for agents).

Round ``r`` (1-based): the current student samples ``samples`` trajectories per training
problem (batched, cached, sandboxed, ``temperature`` > 0); every episode is stored with source
``self-round-r`` and scored by the verifier critic; the correct ones with code not seen before
for that problem join the training set; a new student is trained from the base model on the
seed trajectories plus every round's additions (STaR restarts from the base each round) and,
when evaluation data is given, evaluated. Wrong episodes stay in the table: the negatives of
negative-aware training (``symkd agent train --loss redi``).

Each round is recorded in ``agent_self_train_rounds`` (generator, counts, student folder,
training summary, evaluation); a finished round is skipped on rerun and an interrupted one
resumes from the request cache and the student's checkpoints. It stops early when a round
adds nothing new, or when its student's accuracy is below the previous round's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from symkd.pipelines.agents import tables
from symkd.pipelines.agents.agent import episode_rows, solve
from symkd.pipelines.agents.loop import AgentConfig
from symkd.pipelines.agents.options import SelfTrainConfig
from symkd.pipelines.agents.step import steps_of
from symkd.store.db import Store, utcnow


def round_source(r: int) -> str:
    return f"self-round-{r}"


def _ensure(store: Store) -> None:
    tables.ensure(store)
    if "agent_self_train_rounds" not in store.db.table_names():
        with store.transaction() as db:
            db["agent_self_train_rounds"].create(
                {"round": int, "generator": str, "tasks": int, "sampled": int, "correct": int, "added": int,
                 "examples": int, "student": str, "training": str, "evaluation": str, "status": str,
                 "created_at": str}, pk="round")  # fmt: skip


def code_signature(row: dict[str, Any]) -> str:
    """What makes two trajectories of one problem the same: their code, whitespace-normalised."""
    return "\n".join(" ".join((s.code or "").split()) for s in steps_of(row))


def new_positives(rows: Sequence[dict[str, Any]], seen: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Correct rows whose code is new for their task (updates ``seen``)."""
    kept = []
    for row in rows:
        if not row["correct"]:
            continue
        sig = code_signature(row)
        if sig in seen.setdefault(row["task_id"], set()):
            continue
        seen[row["task_id"]].add(sig)
        kept.append(row)
    return kept


def paired_negatives(positives: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wrong rows paired with the positives as REDI pairs them: per task, at most as many failed
    episodes (distinct code, in order) as the task has positives; a task without one gives none."""
    wanted: dict[str, int] = {}
    for row in positives:
        wanted[row["task_id"]] = wanted.get(row["task_id"], 0) + 1
    seen: dict[str, set[str]] = {}
    kept = []
    for row in rows:
        task, sig = row["task_id"], code_signature(row)
        if row["correct"] or sig in seen.setdefault(task, set()) or len(seen[task]) >= wanted.get(task, 0):
            continue
        seen[task].add(sig)
        kept.append(row)
    return kept


def sample_round(store: Store, student: str, tasks: Sequence[Any], r: int, config: SelfTrainConfig,
                 teacher_options: dict[str, Any] | None, progress: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The student's sampled episodes of round ``r``, stored (source ``self-round-r``) and verified."""
    from symkd.critics.base import apply_critic
    from symkd.pipelines.agents.verifier import VerifierCritic
    from symkd.session import TeacherSession

    agent = AgentConfig(max_steps=config.max_steps, max_tokens=config.max_tokens, few_shot=False,
                        temperature=config.temperature, seed=r, sandbox=config.sandbox, wave=config.wave)  # fmt: skip
    record = {**agent.as_dict(), "round": r, "samples": config.samples}
    with TeacherSession(student, store, options=teacher_options, progress=progress) as session:
        episodes, _ = solve(session, tasks, agent, samples=config.samples, stage=f"self-train round {r}", progress=progress)
    rows = episode_rows(episodes, source=round_source(r), model=student, config=record)
    for row in rows:
        row["source"] = round_source(r)
    tables.write_trajectories(store, rows)
    ids = [row["id"] for row in rows]
    if ids:
        apply_critic(store, VerifierCritic(), where=f"id in ({','.join('?' * len(ids))})", params=ids)
    return rows


def training_rows(store: Store, config: SelfTrainConfig, upto: int) -> list[dict[str, Any]]:
    """Seed trajectories plus the new, correct, distinct-code episodes of rounds 1..upto."""
    rows = tables.read_trajectories(store, sources=config.seed_sources, verified="kept")
    seen: dict[str, set[str]] = {}
    new_positives(rows, seen)
    for r in range(1, upto + 1):
        rows += new_positives(tables.read_trajectories(store, sources=[round_source(r)]), seen)
    return rows


def finished_rounds(store: Store) -> dict[int, dict[str, Any]]:
    _ensure(store)
    rows = store.query("select * from agent_self_train_rounds where status = 'done' order by round")
    return {row["round"]: {**row, "evaluation": json.loads(row["evaluation"] or "null")} for row in rows}


def record_round(store: Store, row: dict[str, Any]) -> None:
    row = {**row, "created_at": utcnow()}
    for name in ("training", "evaluation"):
        row[name] = json.dumps(row.get(name), default=str)
    with store.transaction() as db:
        db["agent_self_train_rounds"].upsert(row, pk="round")


def should_stop(added: int, accuracy: float | None, previous: float | None) -> str | None:
    if added == 0:
        return "no new correct trajectory"
    if accuracy is not None and previous is not None and accuracy < previous:
        return f"accuracy fell ({previous:.4f} -> {accuracy:.4f})"
    return None


def run(db: Path, data: Path, student: Path, out: Path, *, config: SelfTrainConfig, train_options: dict[str, Any],
        eval_data: Path | None = None, limit: int | None = None, teacher_options: dict[str, Any] | None = None,
        progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Rounds of sample -> verify -> retrain (-> evaluate); returns the per-round report."""
    from symkd.pipelines.agents.gsm8k import read_tasks

    tasks = read_tasks(data, limit=limit)
    with Store(db) as store:
        _ensure(store)
        done = finished_rounds(store)
    generator, previous, report = student, None, []
    for r in range(1, config.rounds + 1):
        row = done.get(r) or _one_round(db, tasks, generator, out, r, config, train_options, eval_data,
                                         teacher_options, progress)  # fmt: skip
        accuracy = (row.get("evaluation") or {}).get("accuracy")
        report.append({k: row[k] for k in ("round", "generator", "sampled", "correct", "added", "examples", "student")}
                      | {"accuracy": accuracy})  # fmt: skip
        reason = should_stop(row["added"], accuracy, previous)
        generator, previous = Path(row["student"]), accuracy if accuracy is not None else previous
        if reason:
            report[-1]["stopped"] = reason
            break
    return {"rounds": report, "db": str(db)}


def _one_round(db: Path, tasks: Sequence[Any], generator: Path, out: Path, r: int, config: SelfTrainConfig,
               train_options: dict[str, Any], eval_data: Path | None, teacher_options: dict[str, Any] | None,
               progress: bool) -> dict[str, Any]:  # fmt: skip
    from symkd.pipelines.agents.evaluation import evaluate
    from symkd.pipelines.agents.export import training_data
    from symkd.students.modeling import load_tokenizer
    from symkd.students.train import TrainConfig, train

    spec = f"hf:{generator}"
    with Store(db) as store:
        sampled = sample_round(store, spec, tasks, r, config, teacher_options, progress)
        before = len(training_rows(store, config, r - 1))
        rows = training_rows(store, config, r)
    tc = TrainConfig(**{**train_options, "out": out / f"round-{r}"})
    data = training_data(rows, load_tokenizer(tc.base_model), {"kind": "agent-trajectories", "db": str(db),
                                                                "self_train_round": r})  # fmt: skip
    summary = train(data, tc, progress=progress)
    evaluation = None
    if eval_data is not None:
        agent = AgentConfig(max_steps=config.max_steps, max_tokens=config.max_tokens, few_shot=False, sandbox=config.sandbox)
        evaluation = evaluate(f"hf:{tc.out}", eval_data, db, config=agent, limit=config.eval_limit,
                              teacher_options=teacher_options, progress=progress)  # fmt: skip
    row = {"round": r, "generator": spec, "tasks": len(tasks), "sampled": len(sampled),
           "correct": sum(x["correct"] for x in sampled), "added": len(rows) - before, "examples": len(rows),
           "student": str(tc.out), "training": {k: summary.get(k) for k in ("final", "throughput", "total_steps")},
           "evaluation": evaluation, "status": "done"}  # fmt: skip
    with Store(db) as store:
        record_round(store, row)
    return row
