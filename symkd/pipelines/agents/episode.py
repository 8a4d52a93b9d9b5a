"""One agent episode: a task, its steps (the conversation derives from them), its sandbox worker and its counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from symkd.pipelines.agents.gsm8k import Task, answers_match
from symkd.pipelines.agents.step import Step, messages_of


@dataclass
class Episode:
    task: Task
    sample: int
    base: list[dict[str, str]]  # the system prompt and the question
    template_id: str
    template_version: str
    prefill: str = ""  # "Thought: <first paragraph of a CoT answer>" continued by the model at step 1
    steps: list[Step] = field(default_factory=list)  # the single record: the chat turns derive from it
    final_answer: str | None = None
    done: bool = False
    hit_step_limit: bool = False
    error: str | None = None  # the teacher's request failed: nothing to record, a rerun retries
    parse_errors: int = 0
    exec_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_keys: list[str] = field(default_factory=list)
    run_ids: set[str] = field(default_factory=set)
    sandbox: Any = None

    @property
    def item_id(self) -> str:
        return f"{self.task.id}#{self.sample}"

    @property
    def turns(self) -> list[dict[str, str]]:
        """The assistant actions and observations so far, derived from the steps."""
        return messages_of(self.steps)

    def conversation(self) -> list[dict[str, str]]:
        return [*self.base, *self.turns]

    def record(self, step: Step, final_answer: Any = None) -> None:
        """Add a step and its counts; a clean final answer (``step.observation`` None) ends the episode."""
        if step.parse_error:
            self.parse_errors += 1
        elif step.error:
            self.exec_errors += 1
        if step.is_final and not step.error:
            self.final_answer, self.done = final_answer, True
        self.steps.append(step)

    @property
    def correct(self) -> bool:
        return self.final_answer is not None and answers_match(self.final_answer, self.task.answer)

    def add_usage(self, response: Any) -> None:
        self.prompt_tokens += response.usage.prompt_tokens
        self.completion_tokens += response.usage.completion_tokens

    def fail(self, reason: str | None) -> None:
        self.error, self.done = reason or "failed", True

    def adopt(self, sandbox: Any) -> None:
        """Make ``sandbox`` (a fork chosen by voting) this episode's state; None keeps the old one."""
        if sandbox is None or sandbox is self.sandbox:
            return
        self.close_sandbox()
        self.sandbox = sandbox

    def close_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None

    def to_row(self, *, source: str, model: str, trajectory_id: str, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": trajectory_id, "source": source, "task_id": self.task.id, "sample": self.sample,
            "question": self.task.question, "reference": self.task.answer, "model": model,
            "template_id": self.template_id, "template_version": self.template_version,
            "final_answer": self.final_answer, "correct": int(self.correct), "n_steps": len(self.steps),
            "hit_step_limit": int(self.hit_step_limit), "parse_errors": self.parse_errors,
            "exec_errors": self.exec_errors, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "first_thought": self.prefill or None,
            "steps": [s.to_dict() for s in self.steps], "messages": self.conversation(), "response_keys": self.response_keys,
            "run_ids": sorted(self.run_ids), "config": config,
        }  # fmt: skip
