"""``learn_strategies``: the API behind ``symkd strategies learn``.

    from symkd.pipelines.strategies import LearnConfig, learn_strategies
    report = learn_strategies("smollm2", "lib.db", data="gsm8k/train.jsonl", rounds=2, scenarios=40)
    report.rounds[-1]["library_size"]
    learn_strategies("smollm2", "lib.db", LearnConfig(rounds=3), data="gsm8k/train.jsonl", n_validation=12)

Options are :class:`LearnConfig` fields, as a ``config`` or as keyword overrides of it.

The student defaults to the embedded ``smollm2``; any teacher spec works for either side.
Pass ``scorer=`` (an :class:`~.acceptance.Scorer`) to try something other than the student
model (tests pass a deterministic fake).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from symkd.results import DictAccess
from symkd.session import TeacherSession
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.options import TeacherOptions, as_options
from symkd.pipelines.strategies import tables
from symkd.pipelines.strategies.acceptance import Scorer
from symkd.pipelines.strategies.loop import Round, commit_round, finished_rounds, learn_id_of, record_pool
from symkd.pipelines.strategies.options import LearnConfig, learn_config
from symkd.pipelines.strategies.scenarios import file_digest, read_scenarios, sample_pool
from symkd.pipelines.strategies.student import StudentScorer


@dataclass
class LearnResult(DictAccess):
    """What a learn run did: one row per round (counts, the student's pool accuracy, library size)."""

    learn_id: str
    db: str
    teacher: str
    student: str
    data: dict[str, Any]
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    library_size: int
    proposals: int
    accepted: int
    acceptance_rate: Optional[float]
    failed_requests: int
    stages: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _spec_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else type(spec).__name__


def learn_strategies(
    teacher: str | Teacher,
    db: str | Path,
    config: LearnConfig | None = None,
    *,
    data: str | Path,
    student: str | Teacher = "smollm2",
    scorer: Scorer | None = None,
    teacher_options: TeacherOptions | dict[str, Any] | None = None,
    student_options: TeacherOptions | dict[str, Any] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> LearnResult:
    """Run (or resume) ``config.rounds`` rounds; ``config`` (default :class:`LearnConfig`) with
    ``overrides``, its fields, applied (``rounds=3, n_validation=12``)."""
    cfg = learn_config(config, overrides)
    pool = sample_pool(read_scenarios(data), cfg.scenarios, cfg.seed)  # bad data fails before the DB is touched
    started = time.monotonic()
    store = Store(db)
    try:
        tables.ensure(store)
        t_opts, s_opts = as_options(teacher_options).given(), as_options(student_options).given()
        teacher_session = TeacherSession(teacher, store, t_opts, progress=progress)
        same = teacher == student and t_opts == s_opts
        student_session = teacher_session if same else TeacherSession(student, store, s_opts, progress=progress)
        try:
            the_scorer = scorer or StudentScorer(student_session, max_tokens=cfg.student_max_tokens)
            learn_id = learn_id_of(_spec_name(teacher), the_scorer.describe(), file_digest(data), cfg)
            record_pool(store, learn_id, pool)
            failed = _run_rounds(store, learn_id, cfg, the_scorer, teacher_session, _spec_name(teacher), progress)
            stages = {**teacher_session.stages, **student_session.stages}
        finally:
            teacher_session.close()
            if student_session is not teacher_session:
                student_session.close()
        return _result(store, learn_id, teacher, the_scorer, data, cfg, failed, stages, time.monotonic() - started)
    finally:
        store.close()


def _failed(*sessions: TeacherSession) -> int:
    return int(sum(stage["failed"] for s in {id(x): x for x in sessions}.values() for stage in s.stages.values()))


def _run_rounds(store: Store, learn_id: str, cfg: LearnConfig, scorer: Scorer, teacher: TeacherSession,
                teacher_name: str, progress: bool) -> int:  # fmt: skip
    """Rounds not yet finished, in order; stops (writing nothing for it) at a round with failed requests."""
    from symkd.progress import bar

    done = {row["round"] for row in finished_rounds(store, learn_id)}
    config_json = json.dumps(cfg.identity(), sort_keys=True)
    sessions = [teacher] + ([scorer.session] if isinstance(scorer, StudentScorer) else [])
    with bar(range(1, cfg.rounds + 1), desc="rounds", unit="round", enabled=progress) as rounds:
        for number in rounds:
            if number in done:
                continue
            before = _failed(*sessions)
            rnd = Round(store, learn_id, number, cfg, scorer, teacher, teacher_name, progress)
            # the round's header is the bar's postfix (refresh=False: a bar appears only after its delay)
            header = f"round {number}: {len(rnd.pool)} scenarios, library {len(rnd.library)}"
            rounds.set_postfix_str(header, refresh=False)
            outcome = rnd.run()
            failed = _failed(*sessions) - before
            if failed:
                return failed  # the next run retries them; nothing of this round is written
            commit_round(store, rnd, outcome, config_json)
    return 0


def _result(store: Store, learn_id: str, teacher: Any, scorer: Scorer, data: str | Path, cfg: LearnConfig,
            failed: int, stages: dict[str, Any], seconds: float) -> LearnResult:  # fmt: skip
    rounds = finished_rounds(store, learn_id)
    for row in rounds:
        row.pop("config", None)
    proposals = sum(r["proposals"] for r in rounds)
    accepted = sum(r["accepted"] + r["merged"] for r in rounds)
    size = store.scalar("select count(*) from strategies where status in ('accepted', 'edited')")
    return LearnResult(
        learn_id=learn_id, db=str(store.path), teacher=_spec_name(teacher), student=scorer.describe().get("student", type(scorer).__name__),
        data={"file": str(data), "scenarios": cfg.scenarios}, config=cfg.identity() | {"rounds": cfg.rounds},
        rounds=rounds, library_size=int(size or 0), proposals=proposals, accepted=accepted,
        acceptance_rate=round(accepted / proposals, 4) if proposals else None, failed_requests=failed,
        stages=stages, seconds=round(seconds, 2),
    )  # fmt: skip
