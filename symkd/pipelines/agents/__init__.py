"""Agent distillation (CodeAct trajectories, tools, sandboxed code): the pipeline's public module.

Other pipelines use only what is named here.
"""

from __future__ import annotations

from symkd.pipelines.agents.gsm8k import Task, accuracy, answers_match, extract_answer, read_tasks, reference_answer

__all__ = ["Task", "accuracy", "answers_match", "extract_answer", "read_tasks", "reference_answer"]
