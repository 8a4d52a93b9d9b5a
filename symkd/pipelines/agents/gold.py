"""Indirect knowledge -> demonstrations: GSM8K worked solutions as CodeAct trajectories.

GSM8K's solutions mark each calculation as ``<<expr=value>>``. A solution becomes at most
three code steps (its annotated lines in order, grouped) and a final step: each step's code
is one assignment per annotation (a number that an earlier line computed and the question
does not mention becomes that line's variable), then ``print`` of the step's last variable;
the final step calls ``final_answer`` on the variable holding the reference answer.

A step's thought says what to compute, never the result: each line's written calculation and
its result (``48/2 = <<48/2=24>>24``) become the expression the code evaluates, with earlier
results named by their variables (``Natalia sold 48/2 clips in May.``, then ``Natalia sold
48 + clips clips altogether``). The values appear only in the observations, where the
sandbox printed them, so a student learns to let the code do the arithmetic. The final
step's thought states the answer only when an observation already showed it. Every converted trajectory
really runs in the sandbox (observations are what it printed) and is kept only when the
sandbox's final answer matches the reference; ``source`` is ``gold-rationales``.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any, Sequence

from symkd.pipelines.agents.actions import format_action, observation
from symkd.pipelines.agents.gsm8k import Task, answers_match
from symkd.pipelines.agents.step import Step, messages_of

SOURCE = "gold-rationales"
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
_NUMBER_TOKEN = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_AFTER = re.compile(r"^\s*[\d.,]*\s*%?\s*([A-Za-z]+)")
#: the calculation written before an annotation ("48/2 = $", "0.2 x 50 =") and the result after it
_WRITTEN_CALC = re.compile(r"(?:[\d.,]+|[ \t+\-*/×÷()%$^]|(?<=[\d ])x(?=[\d ]))*=[ \t]*\$?[ \t]*$")
_WRITTEN_RESULT = re.compile(r"[ \t]*\$?-?[\d.,]*\d")
_NAMES_TO_AVOID = set(keyword.kwlist) | {"print", "sum", "min", "max", "round", "int", "float", "abs", "list",
                                         "id", "type", "len", "final_answer", "str", "input", "range"}  # fmt: skip


@dataclass(frozen=True)
class GoldStep:
    thought: str
    code: str


def clean_expression(expr: str) -> str:
    """GSM8K's calculator syntax as Python: commas in numbers, x/÷ signs, $, leading zeros."""
    e = expr.strip().replace("$", "").replace("×", "*").replace("÷", "/").replace("^", "**")
    e = re.sub(r"(?<=\d),(?=\d{3})", "", e)
    e = re.sub(r"(?<=[\d)\s])x(?=[\d(\s])", "*", e)
    e = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", e)
    return re.sub(r"(?<![\w.])0+(?=\d)", "", e)


def _name_for(after: str, used: set[str], index: int) -> str:
    m = _AFTER.match(after)
    word = m.group(1).lower() if m else ""
    base = word if word and word.isidentifier() and word not in _NAMES_TO_AVOID and len(word) > 1 else f"x{index}"
    name, k = base, 2
    while name in used:
        name, k = f"{base}_{k}", k + 1
    used.add(name)
    return name


def _substitute(expr: str, known: dict[str, str], question_numbers: set[str]) -> str:
    def repl(m: re.Match) -> str:
        token = m.group(0)
        return known.get(token, token) if token not in question_numbers else token

    return _NUMBER_TOKEN.sub(repl, expr)


def gold_steps(task: Task, *, max_code_steps: int = 3) -> list[GoldStep] | None:
    """The CodeAct steps of a task's worked solution; None when it has no annotation."""
    lines = [ln.strip() for ln in task.solution.splitlines() if ln.strip()]
    question_numbers = set(_NUMBER_TOKEN.findall(task.question.replace(",", "")))
    known: dict[str, str] = {}  # result text -> variable
    used: set[str] = set()
    blocks: list[tuple[str, list[str], str]] = []  # (thought, code lines, last variable)
    for line in lines:
        found = list(_ANNOTATION.finditer(line))
        if not found:
            continue
        code, var, thought, cursor = [], "", "", 0
        for m in found:
            var = _name_for(line[m.end():], used, len(used) + 1)
            expr = _substitute(clean_expression(m.group(1)), known, question_numbers)
            code.append(f"{var} = {expr}")
            before = _WRITTEN_CALC.sub("", line[cursor : m.start()])
            thought += f"{before} {expr}"
            result = _WRITTEN_RESULT.match(line, m.end())
            cursor = result.end() if result else m.end()
            value = m.group(2).strip().replace(",", "").replace("$", "")
            if value:
                known[value] = var
        thought = _substitute(re.sub(r"\s+", " ", thought + line[cursor:]).strip(), known, question_numbers)
        blocks.append((thought, code, var))
    if not blocks:
        return None
    groups = _group(blocks, max_code_steps)
    steps = [GoldStep(" ".join(b[0] for b in g), "\n".join([*(c for b in g for c in b[1]), f"print({g[-1][2]})"]))
             for g in groups]  # fmt: skip
    answer_var = known.get(task.answer.replace(",", "").replace("$", "").strip(), blocks[-1][2])
    printed = {g[-1][2] for g in groups}
    final = f"The answer is {task.answer}." if answer_var in printed else f"The answer is {answer_var}."
    steps.append(GoldStep(final, f"final_answer({answer_var})"))
    return steps


def _group(blocks: list, n: int) -> list[list]:
    size = -(-len(blocks) // n)  # ceil
    return [blocks[i : i + size] for i in range(0, len(blocks), size)]


def fork_of_root(root: Any) -> Any:
    """``root.fork()``, tried once more after a SandboxError. A root forked once per task pays
    every fork in its own CPU time, and one that dies (its lifetime CPU cap after some 10^5
    forks, a kill) is restarted empty by its next fork, which is all a root holds here: one lost
    root must not end a conversion of thousands of tasks."""
    from symkd.sandbox import SandboxError

    try:
        return root.fork()
    except SandboxError:
        return root.fork()


def convert(tasks: Sequence[Task], base_for: Any, *, template: Any, sandbox_mode: str = "bwrap",
            progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, int]]:  # fmt: skip
    """Trajectory rows of the tasks whose converted code reaches the reference in the sandbox.

    ``base_for(task)`` gives the episode's system prompt + question messages. Returns the rows
    and counts {tasks, no_annotation, wrong_answer, failed_step, converted}.
    """
    from symkd.progress import bar
    from symkd.sandbox import Sandbox, SandboxLimits

    counts = dict.fromkeys(("tasks", "no_annotation", "failed_step", "wrong_answer", "converted"), 0)
    rows: list[dict[str, Any]] = []
    with Sandbox(limits=SandboxLimits(step_timeout=5.0), mode=sandbox_mode) as root:
        for task in bar(tasks, desc="gold rationales", unit="task", enabled=progress):
            counts["tasks"] += 1
            steps = gold_steps(task)
            if steps is None:
                counts["no_annotation"] += 1
                continue
            child = fork_of_root(root)
            try:
                outcome, row = _run(task, steps, child, base_for(task), template)
            finally:
                child.close()
            counts[outcome] += 1
            if row is not None:
                rows.append(row)
    return rows, counts


def _run(task: Task, steps: list[GoldStep], sandbox: Any, base: list[dict[str, str]], template: Any) -> tuple[str, Any]:
    records: list[Step] = []
    final = None
    for step in steps:
        result = sandbox.run(step.code)
        if result.error:
            return "failed_step", None
        records.append(Step(raw=format_action(step.thought, step.code), thought=step.thought, code=step.code,
                            stdout=result.stdout, seconds=result.seconds, is_final=result.is_final,
                            observation=None if result.is_final else observation(result.stdout, None)))  # fmt: skip
        if result.is_final:
            final = result.final_answer
            break
    if final is None or not answers_match(final, task.answer):
        return "wrong_answer", None
    row = {"task_id": task.id, "sample": 0, "question": task.question, "reference": task.answer,
           "model": SOURCE, "template_id": template.id, "template_version": template.version,
           "final_answer": final, "correct": 1, "n_steps": len(records), "hit_step_limit": 0, "parse_errors": 0,
           "exec_errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "first_thought": None,
           "steps": [r.to_dict() for r in records], "messages": [*base, *messages_of(records)],
           "response_keys": [], "run_ids": [], "config": {"converter": "gold/1"}}  # fmt: skip
    return "converted", row
