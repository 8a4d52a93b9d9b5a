"""Stage 1: few-shot generation of new everyday events (heads), as in West et al. (2022).

Each prompt lists ~10 random seed events as a numbered list and leaves the next number
open; the teacher writes one more. A sample is kept only if it is complete (ended on the
stop sequence, and not on a dangling "to"/"the"/...), starts with "PersonX", has only ordinary characters, is at least 7
characters long, meets the lexical constraints, is not a copy of a seed and not a duplicate;
then the least likely 20 % (summed token log-probability) are dropped when the backend gives
log-probabilities. Prompts are added in rounds until enough events survive; every sample is
stored in ``events`` with status kept/dropped, the reason and its provenance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from symkd.teachers.constraints import satisfies
from symkd.graphs.triples import add_events, event_id, normalize
from symkd.pipelines.commonsense.names import derive_seed, rng_for
from symkd.pipelines.commonsense.seeds import clean
from symkd.prompts import PromptTemplate, get_template
from symkd.store.db import Store
from symkd.stages import Stage, run_stage
from symkd.teachers.messages import Request, Response

if TYPE_CHECKING:
    from symkd.session import TeacherSession

TEMPLATE = "commonsense/events"
SHOTS = 10
MIN_CHARS = 7
LOW_LOGPROB_FRACTION = 0.2
#: the share of samples expected to pass the filters (sizes the first round)
EXPECTED_YIELD = 0.6
#: at most this many prompts per wanted event, over all rounds
MAX_PROMPTS_PER_EVENT = 8
_ORDINARY = re.compile(r"^(?:[A-Za-z0-9 ,.'\-]|___)+$")
#: a sample ending on one of these stopped mid-sentence even if it ended on the stop sequence
_DANGLING = {"a", "an", "the", "to", "of", "and", "or", "but", "with", "for", "at", "in", "on", "his", "her", "their", "is", "was"}
REASONS = ("incomplete", "no-personx", "characters", "short", "constraint", "seed-copy", "duplicate", "low-logprob", "surplus")


def check(text: str, finish_reason: str | None, require: Sequence[str] = (), forbid: Sequence[str] = ()) -> str | None:
    """Why a cleaned sample is dropped by the filters, or None when it passes them."""
    if finish_reason != "stop" or text.split()[-1:] and text.split()[-1].lower() in _DANGLING:
        return "incomplete"
    if not text.startswith("PersonX"):
        return "no-personx"
    if not _ORDINARY.match(text):
        return "characters"
    if len(text) < MIN_CHARS or len(text.split()) < 2:  # "PersonX" alone says nothing
        return "short"
    if not satisfies(text, require, forbid):
        return "constraint"
    return None


class EventStage(Stage[int, list[tuple[str, str | None]]]):
    """Rows are prompt indices: prompt ``index`` shows ~10 seed events drawn with
    ``rng_for(seed, "event-shots", index)``; the parse is one (cleaned first line, why the
    filters drop it or None) per completion (see :func:`check`; copies and duplicates are the
    caller's, who knows what came before)."""

    kind = "commonsense-events"
    name = "events"

    def __init__(self, seed_events: Sequence[str], seed: int, template: PromptTemplate,
                 require: Sequence[str] = (), forbid: Sequence[str] = ()):  # fmt: skip
        self.seed_events, self.seed, self.template = list(seed_events), seed, template
        self.require, self.forbid = require, forbid

    def request(self, index: int) -> Request:
        shots = rng_for(self.seed, "event-shots", index).sample(self.seed_events, min(SHOTS, len(self.seed_events)))
        return self.template.request(f"event-{index}", {"shots": shots}, seed=derive_seed(self.seed, "event", index))

    def requests(self, rows: Sequence[int]) -> list[Request]:
        return [self.request(index) for index in rows]

    def parse(self, row: int, response: Response) -> list[tuple[str, str | None]]:
        texts = [clean(completion.text.split("\n")[0]) for completion in response.completions]
        return [(text, check(text, c.finish_reason, self.require, self.forbid)) for text, c in zip(texts, response.completions)]


def low_logprob_ids(candidates: list["Candidate"]) -> set[int]:
    """Indices (into ``candidates``) of the least likely 20 %; empty without log-probs."""
    if not candidates or any(c.logprob is None for c in candidates):
        return set()
    n_drop = int(len(candidates) * LOW_LOGPROB_FRACTION)
    ranked = sorted(range(len(candidates)), key=lambda i: (candidates[i].logprob, -i))
    return set(ranked[:n_drop])


@dataclass
class Candidate:
    text: str
    logprob: float | None
    run_id: str
    response_key: str
    reason: str | None = None


@dataclass
class EventsResult:
    kept: list[str]
    counts: dict
    summaries: list[dict] = field(default_factory=list)


def generate_events(
    session: "TeacherSession",
    store: Store,
    seed_events: Sequence[str],
    n_events: int,
    *,
    seed: int,
    require: Sequence[str] = (),
    forbid: Sequence[str] = (),
    config: dict | None = None,
) -> EventsResult:
    """Generate, filter and store events until ``n_events`` are kept (or the prompt budget ends)."""
    template = get_template(TEMPLATE)
    stage = EventStage(seed_events, seed, template, require, forbid)
    seen_seeds = {normalize(s) for s in seed_events}
    rows: dict[str, dict] = {}  # event id -> row (a valid sample wins over a dropped one)
    valid: list[Candidate] = []
    counts = {"prompts": 0, "generated": 0, "failed": 0, **{f"dropped_{r}": 0 for r in REASONS}}
    summaries: list[dict] = []
    budget = max(n_events * MAX_PROMPTS_PER_EVENT, 8)
    target = math.ceil(n_events / (1 - LOW_LOGPROB_FRACTION))
    batch = min(budget, math.ceil(target / EXPECTED_YIELD))
    while batch > 0 and n_events > 0:
        start = counts["prompts"]
        answers = run_stage(session, stage, range(start, start + batch), config={**(config or {}), "round_start": start})
        summaries.append(answers.result.as_dict())
        counts["prompts"] += batch
        for answer in answers:
            if not answer.answered:
                counts["failed"] += 1
                continue
            for completion, (text, reason) in zip(answer.response.completions, answer.parsed):
                counts["generated"] += 1
                cand = Candidate(text, completion.logprob_sum, answers.result.run_id, answer.key, reason)
                if cand.reason is None and normalize(text) in seen_seeds:
                    cand.reason = "seed-copy"
                if cand.reason is None and event_id(text) in rows and rows[event_id(text)]["status"] == "kept":
                    cand.reason = "duplicate"
                _record(rows, cand, template)
                if cand.reason is None:
                    valid.append(cand)
                else:
                    counts[f"dropped_{cand.reason}"] += 1
        have = len(valid)
        left = budget - counts["prompts"]
        if have >= target or left <= 0:
            break
        rate = max(have / max(counts["generated"], 1), 0.05)
        batch = min(left, math.ceil((target - have) / rate * 1.2))
    kept = _select(valid, n_events, rows, counts)
    _store(store, rows)
    counts["kept"] = len(kept)
    counts["dropped"] = counts["generated"] - len(kept)
    return EventsResult(kept, counts, summaries)


def _record(rows: dict[str, dict], cand: Candidate, template: PromptTemplate) -> None:
    """Remember the sample's row; a valid sample replaces a dropped one with the same text."""
    if not normalize(cand.text):
        return
    eid = event_id(cand.text)
    old = rows.get(eid)
    if old is not None and not (old["status"] == "dropped" and cand.reason is None):
        return
    rows[eid] = {
        "id": eid,
        "text": cand.text,
        "kind": "event",
        "source": "generated",
        "run_id": cand.run_id,
        "response_key": cand.response_key,
        "template_id": template.id,
        "template_version": template.version,
        "logprob_sum": cand.logprob,
        "status": "kept" if cand.reason is None else "dropped",
        "reason": cand.reason,
    }


def _select(valid: list[Candidate], n_events: int, rows: dict[str, dict], counts: dict) -> list[str]:
    """Drop the least likely 20 %, keep the first ``n_events`` of the rest (generation order)."""
    low = low_logprob_ids(valid)
    kept: list[str] = []
    for i, cand in enumerate(valid):
        reason = "low-logprob" if i in low else ("surplus" if len(kept) >= n_events else None)
        if reason is None:
            kept.append(cand.text)
            continue
        counts[f"dropped_{reason}"] += 1
        rows[event_id(cand.text)].update(status="dropped", reason=reason)
    return kept


def _store(store: Store, rows: dict[str, dict]) -> None:
    """Insert new rows; an event kept now but dropped in an earlier run is marked kept."""
    add_events(store, rows.values())
    kept = [eid for eid, row in rows.items() if row["status"] == "kept"]
    with store.transaction() as db:
        db.execute(
            "update events set status = 'kept', reason = null "
            "where status != 'kept' and id in (select value from json_each(?))",
            [_json(kept)],
        )


def _json(items: list[str]) -> str:
    import json

    return json.dumps(items)
