"""The CodeAct loop: episodes advance together, one batched generation per step.

Each step builds one request per unfinished episode and sends them in one
``session.ask`` (a local teacher batches them; every generation is cached, so a killed run
resumes from the cache). Each episode's code runs in its own sandbox worker, which keeps the
episode's Python state between steps; tools run in this process. With self-consistent
action generation (``sag`` > 0) every step samples N candidate actions, runs each on a fork
of the episode's worker, drops those that fail to parse or raise, groups the rest by what
they printed (or the final answer they gave) and keeps one of the largest group, whose fork
becomes the episode's state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

from symkd.pipelines.agents.actions import Action, parse_action
from symkd.pipelines.agents.episode import Episode
from symkd.pipelines.agents.options import AgentConfig
from symkd.pipelines.agents.step import Step
from symkd.teachers.messages import GenerationParams, Request, Response

#: how a first-thought prefix becomes a prompt: (messages, assistant prefix) -> completion prompt
Continuation = Callable[[list[dict[str, str]], str], str]

__all__ = ["AgentConfig", "Choice", "Continuation", "LoopStats", "advance", "choose_by_consistency", "consistency_key",
           "record_step", "run_episodes"]


@dataclass
class LoopStats:
    steps: int = 0
    requests: int = 0
    failed: int = 0  # episodes whose teacher request finally failed (not written; rerun retries)
    seconds: float = 0.0
    per_step: list[dict[str, Any]] = field(default_factory=list)


def run_episodes(
    session: Any,
    episodes: Sequence[Episode],
    config: AgentConfig,
    *,
    tools: dict[str, Callable[..., Any]] | None = None,
    stage: str = "agent",
    continuation: Continuation | None = None,
    progress: bool = True,
) -> LoopStats:
    """Run every episode to its end (final answer, step limit or teacher failure)."""
    from symkd.progress import bar as progress_bar
    from symkd.sandbox import SandboxLimits

    stats = LoopStats()
    limits = SandboxLimits(step_timeout=config.step_timeout)
    waves = [episodes[i : i + config.wave] for i in range(0, len(episodes), config.wave)]
    with progress_bar(total=len(episodes), initial=sum(e.done for e in episodes), desc=f"{stage} episodes",
                      unit="episode", enabled=progress) as bar:  # fmt: skip
        for w, wave in enumerate(waves):
            suffix = f" (wave {w + 1}/{len(waves)})" if len(waves) > 1 else ""
            _run_wave(session, wave, config, limits, tools, stage, suffix, continuation, stats, bar)
    return stats


def _run_wave(session: Any, wave: Sequence[Episode], config: AgentConfig, limits: Any, tools: dict | None, stage: str,
              suffix: str, continuation: Continuation | None, stats: LoopStats, bar: Any) -> None:  # fmt: skip
    """One wave of episodes, each with a sandbox worker of its own, run to their ends."""
    from symkd.sandbox import Sandbox

    try:
        # sandboxes start one at a time (concurrent starts killed workers on the launcher before the
        # hardening of 0b44c42; not re-measured since); their steps run concurrently below
        for episode in wave:
            if not episode.done:
                episode.sandbox = Sandbox(limits=limits, tools=tools or {}, mode=config.sandbox)
        for step in range(config.max_steps):
            active = [e for e in wave if not e.done]
            if not active:
                break
            _one_step(session, active, config, f"{stage} step {step + 1}{suffix}", continuation, stats, parallel=not tools)
            bar.update(sum(e.done for e in active))
    finally:
        for episode in wave:
            episode.close_sandbox()


def _parallel(fn: Callable[[Any], None], items: Sequence[Any], threads: int) -> None:
    """``fn`` over ``items`` on a thread pool: each call waits on its own sandbox process."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        list(pool.map(fn, items))


def _one_step(session: Any, active: list[Episode], config: AgentConfig, label: str,
              continuation: Continuation | None, stats: LoopStats, *, parallel: bool = True) -> None:  # fmt: skip
    """One batched generation for the active episodes, then each runs its action.

    Actions run on a thread pool when no host tool is involved (tools run in this process
    and may not be thread-safe); each episode only touches its own state and sandbox.
    """
    params = config.params()
    requests = [_request(e, params, continuation) for e in active]
    result = session.ask(requests, kind="agent-step", config=config.as_dict(), stage=label)
    keys = result.keys()
    stats.steps += 1
    stats.requests += len(requests)
    stats.seconds += result.seconds
    stats.per_step.append({"stage": label, "episodes": len(active), "cached": result.cached, "seconds": result.seconds})
    answered = []
    for (item_id, _, response), episode in zip(result, active):
        episode.run_ids.add(result.run_id)
        episode.response_keys.append(keys[item_id])
        if response is None or not response.ok or not response.completions:
            episode.fail(response.error if response is not None else "no answer stored")
            stats.failed += 1
            continue
        episode.add_usage(response)
        answered.append((episode, response))
    _parallel(lambda pair: advance(pair[0], pair[1], config), answered, config.threads() if parallel else 1)


def _request(episode: Episode, params: GenerationParams, continuation: Continuation | None) -> Request:
    messages = episode.conversation()
    if episode.sample and params.seed is not None and params.temperature > 0:
        # samples of one task start from the same messages: each needs its own seed to differ
        params = params.model_copy(update={"seed": (params.seed + 7919 * episode.sample) % (2**63)})
    common = {"id": episode.item_id, "params": params, "sample_index": episode.sample,
              "template_id": episode.template_id, "template_version": episode.template_version}  # fmt: skip
    if episode.prefill and not episode.steps:
        if continuation is None:
            raise ValueError("a first-thought prefix needs a continuation renderer")
        return Request(prompt=continuation(messages, episode.prefill), **common)
    return Request(messages=messages, **common)


def advance(episode: Episode, response: Response, config: AgentConfig) -> None:
    """Apply one step's answer: parse (once per candidate), run (voting over candidates with SAG), observe."""
    prefix = episode.prefill if (episode.prefill and not episode.steps) else ""
    texts = [prefix + c.text for c in response.completions]
    if config.sag and len(texts) > 1:
        choice = choose_by_consistency(texts, episode.sandbox)
        episode.adopt(choice.sandbox)
    else:
        action = parse_action(texts[0])
        result = episode.sandbox.run(action.code) if action is not None else None
        choice = Choice(texts[0], action, result, None, None)
    record_step(episode, choice.text, choice.action, choice.result, choice.vote)
    if not episode.done and len(episode.steps) >= config.max_steps:
        episode.hit_step_limit = True
        episode.done = True


def record_step(episode: Episode, raw: str, action: Action | None, result: Any, vote: dict | None) -> None:
    """The step as a :class:`Step` on the episode (its chat turns derive from it)."""
    if action is None:
        episode.record(Step.unparsed(raw, vote))
    else:
        episode.record(Step.ran(raw, action, result, vote), final_answer=result.final_answer)


def consistency_key(result: Any) -> tuple[str, str]:
    """What candidates are grouped by: the final answer given, else the printed output."""
    if result.is_final:
        return ("final", str(result.final_answer))
    return ("output", result.stdout.strip())


class Choice(NamedTuple):
    """The action an episode takes this step: its text, parsed action (None: a parse failure),
    its step result, the fork it ran on (SAG; None otherwise) and the vote summary (SAG)."""

    text: str
    action: Action | None
    result: Any
    sandbox: Any
    vote: dict[str, Any] | None


def choose_by_consistency(texts: Sequence[str], sandbox: Any) -> Choice:
    """The chosen candidate (text, action, its step result, its forked sandbox, vote summary).

    Each parsed candidate runs on its own fork of ``sandbox``; candidates that raise or time
    out are dropped, and so are those whose fork fails; the first candidate of the largest
    group of equal outputs wins. When none survives, the first parsed candidate is kept (its
    error goes back to the model), and when none parses, the first text (a parse failure).
    """
    from symkd.sandbox import SandboxError, StepResult

    runs: list[Choice] = []
    parsed, unforked = 0, []  # a candidate whose fork fails (the sandbox's budget is spent) is dropped
    for text in texts:
        action = parse_action(text)
        if action is None:
            continue
        parsed += 1
        try:
            child = sandbox.fork()
        except SandboxError as exc:
            unforked.append(Choice(text, action, StepResult(error=f"SandboxError: {exc}"), None, None))
            continue
        runs.append(Choice(text, action, child.run(action.code), child, None))
    valid = [r for r in runs if not r.result.error and not r.result.timed_out]
    counts = Counter(consistency_key(r.result) for r in valid)
    vote = {"candidates": len(texts), "parsed": parsed, "valid": len(valid), "groups": len(counts)}
    if unforked:
        vote["fork_failed"] = len(unforked)
    if valid:
        best = max(counts.values())
        chosen = next(r for r in valid if counts[consistency_key(r.result)] == best)
        vote["group_size"] = best
    elif runs or unforked:
        chosen = (runs or unforked)[0]
    else:
        chosen = Choice(texts[0], None, None, None, None)
    for run in runs:
        if run is not chosen:
            run.sandbox.close()
    return chosen._replace(vote=vote)
