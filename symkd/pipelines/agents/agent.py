"""Solve tasks as an agent: episodes from tasks, the loop, and the first-thought prefix.

    from symkd.session import TeacherSession
    with TeacherSession("smollm2", store) as session:
        episodes = solve(session, tasks, AgentConfig(max_steps=5), tools=[my_langchain_tool])
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Sequence

from symkd.errors import UserError
from symkd.pipelines.agents.episode import Episode
from symkd.pipelines.agents.gsm8k import Task
from symkd.pipelines.agents.loop import AgentConfig, LoopStats, run_episodes
from symkd.pipelines.agents.tables import trajectory_id
from symkd.pipelines.agents.tools import describe, sandbox_callables
from symkd.prompts import get_template

COT_TEMPLATE = "agents/cot"


def _config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def episode_rows(episodes: Sequence[Any], *, source: str, model: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    digest = _config_digest(config)
    rows = []
    for e in episodes:
        if e.error is not None:
            continue
        tid = trajectory_id(source, model, f"{e.template_id}@{e.template_version}", e.task.id, e.sample, digest)
        rows.append(e.to_row(source=source, model=model, trajectory_id=tid, config=config))
    return rows


def base_messages(template: Any, question: str, *, tools: Sequence[Any] = (), guidance: str | None = None,
                  few_shot: bool = True) -> list[dict[str, str]]:  # fmt: skip
    """The system prompt and the question, rendered from the agent template."""
    rendered = template.render({"question": question, "tools": describe(tools), "guidance": guidance or "",
                                "few_shot": few_shot})  # fmt: skip
    return [{"role": m.role, "content": m.content} for m in rendered]


def make_episodes(tasks: Sequence[Task], config: AgentConfig, *, samples: int = 1, tools: Sequence[Any] = (),
                  guidance: Callable[[str], str] | None = None,
                  prefixes: dict[str, str] | None = None) -> list[Episode]:  # fmt: skip
    template = get_template(config.template)
    episodes = []
    for task in tasks:
        text = guidance(task.question) if guidance else None
        base = base_messages(template, task.question, tools=tools, guidance=text, few_shot=config.few_shot)
        prefill = prefixes.get(task.id, "") if prefixes else ""
        for sample in range(samples):
            episodes.append(Episode(task, sample, base, template.id, template.version,
                                    prefill=f"Thought: {prefill}" if prefill else ""))  # fmt: skip
    return episodes


def solve(session: Any, tasks: Sequence[Task], config: AgentConfig, *, samples: int = 1, tools: Sequence[Any] = (),
          guidance: Callable[[str], str] | None = None, prefixes: dict[str, str] | None = None,
          continuation: Callable[..., str] | None = None, stage: str = "agent",
          progress: bool = True) -> tuple[list[Episode], LoopStats]:  # fmt: skip
    """Every task solved ``samples`` times; episodes come back in task order."""
    episodes = make_episodes(tasks, config, samples=samples, tools=tools, guidance=guidance, prefixes=prefixes)
    stats = run_episodes(session, episodes, config, tools=sandbox_callables(tools), stage=stage,
                         continuation=continuation, progress=progress)  # fmt: skip
    return episodes, stats


# ---- chain of thought and the first-thought prefix -----------------------------------------


def cot_completions(session: Any, tasks: Sequence[Task], *, guidance: Callable[[str], str] | None = None,
                    max_tokens: int = 256, stage: str = "cot") -> dict[str, tuple[str | None, bool, str | None]]:  # fmt: skip
    """task id -> (greedy chain-of-thought text, ended on its own, error); cached."""
    template = get_template(COT_TEMPLATE)
    requests = [template.request(t.id, {"question": t.question, "guidance": guidance(t.question) if guidance else ""},
                                 max_tokens=max_tokens) for t in tasks]  # fmt: skip
    result = session.ask(requests, kind="agent-cot", config={"template": template.ref}, stage=stage)
    out: dict[str, tuple[str | None, bool, str | None]] = {}
    for item, _, resp in result:
        if resp is None or not resp.ok or not resp.completions:
            out[item] = (None, False, (resp.error if resp is not None else None) or "no answer stored")
        else:
            first = resp.completions[0]
            out[item] = (first.text, first.finish_reason != "length", None)
    return out


def cot_answers(session: Any, tasks: Sequence[Task], *, guidance: Callable[[str], str] | None = None,
                max_tokens: int = 256, stage: str = "cot") -> dict[str, str]:  # fmt: skip
    """task id -> the model's chain-of-thought answer (greedy; cached); failed requests left out."""
    answers = cot_completions(session, tasks, guidance=guidance, max_tokens=max_tokens, stage=stage)
    return {item: text for item, (text, _, _) in answers.items() if text is not None}


def first_paragraph(cot: str) -> str:
    """The first paragraph of a CoT answer (its first line when it has no blank line), no answer line."""
    text = cot.strip()
    para = re.split(r"\n\s*\n", text, maxsplit=1)[0]
    lines = [ln.strip() for ln in para.splitlines() if ln.strip() and not ln.strip().startswith("####")]
    if len(lines) > 3:  # one long block: keep its first line
        lines = lines[:1]
    return " ".join(lines)[:400].strip()


def continuation_renderer(teacher: Any) -> Callable[[list[dict[str, str]], str], str]:
    """Renders (messages, assistant prefix) with the teacher's own chat template, left open.

    Only local teachers (``smollm2``, ``hf:``, ``llamacpp:``) take a completion prompt in
    their chat format; an API teacher cannot be prefilled reliably, which is a UserError.
    """
    from symkd.teachers.registry import teacher_spec

    spec = teacher_spec(teacher)  # a TeacherSpec from the pipeline: not parsed again
    tokenizer = _load_tokenizer(spec, spec.backend, spec.model)

    def render(messages: list[dict[str, str]], prefix: str) -> str:
        msgs = [*messages, {"role": "assistant", "content": prefix}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, continue_final_message=True)

    return render


def _load_tokenizer(teacher: str, backend: str, model: str) -> Any:
    from pathlib import Path

    if backend in ("hf", "llamacpp"):
        path = Path(model).expanduser()
    else:
        raise UserError(f"--first-thought needs a local teacher (smollm2, hf:DIR, llamacpp:FILE), not {teacher!r}")
    from transformers import AutoTokenizer

    try:
        if path.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"--first-thought: cannot load the tokenizer of {teacher!r}: {str(exc).splitlines()[0]}") from None
    if not getattr(tok, "chat_template", None):
        raise UserError(f"--first-thought: {teacher!r} has no chat template")
    return tok
