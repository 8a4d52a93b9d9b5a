"""Program variants: verified demonstrations without a teacher.

A gold-rationale trajectory (:mod:`.gold`) is a small program whose literals come from the
question. Where the question's numbers map onto its literals they are changed (same kind and
roundness; 0, 1, years, times, fractions and numbers written as words stay), the code is re-run
in the sandbox for the new answer, and the question and the thoughts get the new numbers. A
variant is kept only when every computed value keeps its sign and stays an integer where it was
one, and the answer is positive. Rows: source ``gold-variants``, provenance in ``config``.

A problem is skipped (the reason counted) when a code literal equals a value computed before it
(``ambiguous_role``), when a literal is neither a question number nor a constant the question's
words imply (``unmapped_literal``: "half", "dozen", "hours", "%", ...), when nothing is left to
vary, or when no draw passes. A question number a word also implies ("2 friends ... twice a
week": two roles in the code) is kept as it is. Parents and variants whose normalized question
is in the exclude set (a test set) are dropped. Deterministic given the seed.
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents import gold, tables
from symkd.pipelines.agents.gsm8k import Task, answers_match
from symkd.pipelines.agents.variants_numbers import (Number, Plan, code_literals, implied_values, make_plan,
                                                     normalize_question, question_numbers)  # fmt: skip
from symkd.pipelines.agents.variants_rewrite import (check, final_name, rewrite_code, rewrite_question,
                                                     rewrite_thought, run_program, try_variant)  # fmt: skip

__all__ = ["ATTEMPTS_PER_VARIANT", "SOURCE", "Number", "Plan", "check", "code_literals", "drop_excluded",
           "implied_values", "make_plan", "make_variants", "normalize_question", "question_numbers", "read_exclude",
           "rewrite_code", "rewrite_question", "rewrite_thought", "run_program"]  # fmt: skip

SOURCE = "gold-variants"
ATTEMPTS_PER_VARIANT = 12


def read_exclude(path: str | Path) -> frozenset[str]:
    """Normalized questions of a JSONL file of ``{"question", ...}`` (e.g. GSM8K test)."""
    from symkd.jsonio import read_jsonl

    out = set()
    for lineno, obj in read_jsonl(path):
        if not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise UserError(f"{path}:{lineno}: field 'question' is missing or empty (--exclude needs questions)")
        out.add(normalize_question(obj["question"]))
    return frozenset(out)


def make_variants(tasks: Sequence[Task], base_for: Any, *, template: Any, k: int, seed: int = 0,
                  exclude: frozenset[str] = frozenset(), sandbox_mode: str = "bwrap",
                  progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Up to ``k`` verified variants per task (rows of source ``gold-variants``) and the counts:
    problems, admitting (at least one variant), variants, variants_excluded, skipped {reason: n}."""
    from symkd.progress import bar
    from symkd.sandbox import Sandbox, SandboxLimits

    if k < 1:
        raise UserError(f"--variants must be at least 1, not {k}")
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    admitting = excluded = 0
    with Sandbox(limits=SandboxLimits(step_timeout=5.0), mode=sandbox_mode) as root:
        for task in bar(tasks, desc="program variants", unit="task", enabled=progress):
            made, reason, dropped = _problem(task, root, k=k, seed=seed, exclude=exclude, base_for=base_for,
                                             template=template)  # fmt: skip
            rows += made
            admitting += bool(made)
            excluded += dropped
            if reason:
                skipped[reason] += 1
    return rows, {"problems": len(tasks), "admitting": admitting, "share": round(admitting / max(len(tasks), 1), 4),
                  "variants": len(rows), "variants_excluded": excluded, "skipped": dict(skipped.most_common())}  # fmt: skip


def _problem(task: Task, root: Any, *, k: int, seed: int, exclude: frozenset[str], base_for: Any,
             template: Any) -> tuple[list[dict[str, Any]], str | None, int]:  # fmt: skip
    """(rows, why none was made or None, variants dropped as excluded) of one task."""
    if normalize_question(task.question) in exclude:
        return [], "parent_excluded", 0
    steps = gold.gold_steps(task)
    if steps is None:
        return [], "no_annotation", 0
    box = gold.fork_of_root(root)
    try:
        orig, final = run_program(box, steps), final_name(steps)
        if orig is None or final is None or orig.get(final) is None or not answers_match(str(orig[final]), task.answer):
            return [], "parent_unverified", 0
        if list(orig)[-1] != final:  # the answer is an earlier value that happens to equal the reference
            return [], "answer_not_last", 0
        plan = make_plan(task.question, steps, orig)
        if isinstance(plan, str):
            return [], plan, 0
        rows, fails = _draws(task, steps, plan, orig, final, box, root, k=k, seed=seed, exclude=exclude,
                             base_for=base_for, template=template)  # fmt: skip
    finally:
        box.close()
    return rows, None if rows else (fails.most_common(1)[0][0] if fails else "nothing_to_vary"), fails["excluded"]


def _draws(task: Task, steps: list[gold.GoldStep], plan: Plan, orig: dict[str, Decimal | None], final: str, box: Any,
           root: Any, *, k: int, seed: int, exclude: frozenset[str], base_for: Any,
           template: Any) -> tuple[list[dict[str, Any]], Counter[str]]:  # fmt: skip
    """Draws new numbers (fine steps first, then coarse) until ``k`` variants pass or the budget ends."""
    rng = random.Random(f"{seed}:{task.id}")
    seen, fails, rows = {normalize_question(task.question)}, Counter[str](), []
    budget = ATTEMPTS_PER_VARIANT * k
    for attempt in range(budget):
        mapping = plan.draw(rng, coarse=attempt >= budget // 2) if len(rows) < k else None
        if mapping is None:
            break
        outcome = try_variant(task, steps, plan, mapping, orig, final, box)
        norm = "" if isinstance(outcome, str) else normalize_question(outcome[0])
        reason = outcome if isinstance(outcome, str) else "excluded" if norm in exclude else "duplicate" if norm in seen else None
        row = None if reason else _record(task, len(rows) + 1, outcome, mapping, root, base_for, template, seed)  # type: ignore[arg-type]
        if row is None:
            fails[reason or "answer_mismatch"] += 1
            continue
        seen.add(norm)
        rows.append(row)
    return rows, fails


def _record(task: Task, index: int, variant: tuple[str, list[gold.GoldStep], str], mapping: dict[Decimal, Decimal],
            root: Any, base_for: Any, template: Any, seed: int) -> dict[str, Any] | None:  # fmt: skip
    """The variant's trajectory, run again from a fresh worker step by step; None if it misses its answer."""
    question, steps, answer = variant
    vtask = Task(f"{task.id}~v{index}", question, "", answer)
    child = gold.fork_of_root(root)
    try:
        _, row = gold._run(vtask, steps, child, base_for(vtask), template)
    finally:
        child.close()
    if row is None:
        return None
    parent = tables.trajectory_id(gold.SOURCE, gold.SOURCE, template.ref, task.id, 0)
    row.update(id=tables.trajectory_id(SOURCE, SOURCE, template.ref, vtask.id, 0), source=SOURCE, model=SOURCE,
               config={"converter": "variants/1", "parent_task_id": task.id, "parent_trajectory_id": parent,
                       "substitution": {f"{a:f}": f"{b:f}" for a, b in mapping.items()}, "seed": seed})  # fmt: skip
    return row


def drop_excluded(tasks: Sequence[Task], exclude: str | Path | None) -> tuple[list[Task], frozenset[str], int]:
    """(tasks not in the exclude file, its normalized questions, how many tasks were dropped)."""
    excluded = read_exclude(exclude) if exclude is not None else frozenset()
    kept = [t for t in tasks if normalize_question(t.question) not in excluded]
    return kept, excluded, len(tasks) - len(kept)
