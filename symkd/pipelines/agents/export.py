"""Trajectories out: chat JSONL, student training examples with observation masks, CoT data.

* :func:`chat_record`: ``{"id", "source", "messages": [...]}`` with the system prompt of the
  student format (no few-shot examples), the question, then the assistant's actions and
  the observations as user turns (TRL's conversational language-modelling form).
* :func:`prompt_completion_records`: the same trajectory in TRL's conversational
  prompt-completion form, one example per assistant turn (see there), so TRL's
  ``SFTTrainer`` puts the loss on the assistant turns only.
* :func:`turn_segments`: a conversation cut into (text, trained) pieces with the student's
  own chat template: every assistant turn (with its end-of-turn token) is trained on; the
  system prompt, the question and the observations are masked. SmolLM2's template has no
  generation markers, so the pieces are found by rendering growing prefixes of the turns.
* :func:`training_data`: trajectories as student examples; failed ones (``correct = 0``) as
  negatives for the REDI objective.
* :func:`cot_record`: a GSM8K worked solution as a chat example (annotations removed), the
  CoT-distilled baseline's data.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents.gsm8k import Task
from symkd.prompts import get_template
from symkd.students.data import Example, TrainingData

_ANNOTATION = re.compile(r"<<[^<>]*>>")


def student_messages(row: dict[str, Any], *, few_shot: bool = False) -> list[dict[str, str]]:
    """The trajectory's conversation with the student-format system prompt (tools as recorded)."""
    config = row.get("config") or {}
    ref = f"{row['template_id']}@{row['template_version']}" if row.get("template_id") else "agents/codeact"
    rendered = get_template(ref).render({"question": row["question"], "tools": config.get("tools", []),
                                         "guidance": config.get("guidance_text") or "", "few_shot": few_shot})  # fmt: skip
    base = [{"role": m.role, "content": m.content} for m in rendered]
    turns = [m for m in row["messages"] if m["role"] != "system"][1:]  # everything after the question
    return [*base, *turns]


def _record_info(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "task_id": row["task_id"], "source": row["source"], "correct": bool(row["correct"])}


def chat_record(row: dict[str, Any], *, few_shot: bool = False) -> dict[str, Any]:
    return {**_record_info(row), "messages": student_messages(row, few_shot=few_shot)}


#: ``symkd agent export --format``: the TRL conversational form -> one trajectory's records
FORMATS = {"chat": lambda row: [chat_record(row)], "prompt-completion": lambda row: prompt_completion_records(row)}


def prompt_completion_records(row: dict[str, Any], *, few_shot: bool = False) -> list[dict[str, Any]]:
    """One TRL prompt-completion example per assistant turn: ``prompt`` = every message before it
    (the system prompt, the question, earlier actions and observations), ``completion`` = that turn.

    Why one example per turn: TRL's ``SFTTrainer`` tokenizes ``prompt + completion`` and its
    ``completion_mask`` covers every token after the prompt, so a multi-turn completion
    (action, observation, action) would train on the observations too. Masking them inside
    one completion needs ``assistant_only_loss=True``, i.e. ``{% generation %}`` markers in the
    chat template, which SmolLM2's template lacks and TRL cannot add to it. Split per turn,
    the (context, target) pairs are exactly those of :func:`turn_segments` (every assistant
    turn, with its end-of-turn token, trained once on the conversation before it; observations
    and prompts never trained); the price is that turn *k* re-reads the first *k - 1* turns.
    Each example keeps the trajectory's ``id`` plus ``turn`` (0-based among assistant turns).
    """
    messages = student_messages(row, few_shot=few_shot)
    base = _record_info(row)
    spots = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not spots:
        raise UserError(f"trajectory {row['id']}: no assistant turn to train on")
    return [{"prompt": messages[:i], "completion": [messages[i]], **base, "turn": k} for k, i in enumerate(spots)]


def turn_segments(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[tuple[str, bool], ...]:
    """(text, trained) pieces whose concatenation is the rendered conversation."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("agent training needs a base model with a chat template")
    msgs = list(messages)
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(msgs):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(msgs[:i], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise UserError("the chat template does not render the conversation turn by turn (prefix mismatch)")
        pieces += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    if not pieces:
        raise UserError("a trajectory without an assistant turn cannot be trained on")
    return tuple((text, trained) for text, trained in pieces if text)


def training_data(rows: Iterable[dict[str, Any]], tokenizer: Any, source: dict[str, Any],
                  negatives: Iterable[dict[str, Any]] = ()) -> TrainingData:  # fmt: skip
    """Examples whose loss covers the assistant turns only (observations and prompts masked).

    ``negatives``: failed trajectories (``correct = 0``), marked ``negative`` for the REDI
    objective; their trained pieces are, likewise, only the model's own turns.
    """
    examples = [_example(row, tokenizer, negative=False) for row in rows]
    if not examples:
        raise UserError("no trajectories to train on (generate or convert some first; check --source)")
    failed = [_example(row, tokenizer, negative=True) for row in negatives]
    extra = {"negatives": len(failed)} if failed else {}
    return TrainingData(examples + failed, {**source, "rows": len(examples), **extra})


def _example(row: dict[str, Any], tokenizer: Any, negative: bool) -> Example:
    messages = student_messages(row)
    return Example(prompt="", completion="", group=row["task_id"], messages=tuple(messages),
                   segments=turn_segments(tokenizer, messages), negative=negative)  # fmt: skip


def cot_solution(task: Task) -> str:
    """The worked solution without calculator annotations, ending in ``#### answer``."""
    text = _ANNOTATION.sub("", task.solution).strip()
    return f"{text}\n#### {task.answer}"


def cot_record(task: Task) -> dict[str, Any]:
    template = get_template("agents/cot")
    rendered = template.render({"question": task.question, "guidance": ""})
    messages = [{"role": m.role, "content": m.content} for m in rendered]
    return {"id": task.id, "messages": [*messages, {"role": "assistant", "content": cot_solution(task)}]}
