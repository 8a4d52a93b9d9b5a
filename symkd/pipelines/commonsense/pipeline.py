"""Symbolic commonsense distillation, end to end: events -> applicability -> tails -> critics.

:func:`distill_commonsense` runs the stages of West et al. (2022) on one SQLite store.
Every teacher call goes through :func:`symkd.generation.generate`, so a rerun of the same
call is answered from the cache (no teacher call, no duplicated row) and a killed run
resumes. ``seed`` drives every random choice (seed events per prompt, names, each request's
sampling seed), so the same seed and inputs give the same requests and, with a seeded
backend, the same knowledge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from symkd.pipelines.commonsense import applicability, events, inferences
from symkd.pipelines.commonsense.config import DistillConfig, settings
from symkd.teachers.constraints import check_words
from symkd.graphs.triples import add_events, event_id
from symkd.pipelines.commonsense.relations import PHYSICAL, parse_relations
from symkd.pipelines.commonsense.seeds import Seeds, clean, read_seeds
from symkd.errors import UserError
from symkd.results import DictAccess
from symkd.store.db import Store, opened
from symkd.teachers.base import Teacher
from symkd.teachers.options import TeacherOptions
from symkd.teachers.registry import teacher_spec
from symkd.session import TeacherSession, is_heavy


@dataclass
class DistillResult(DictAccess):
    """Counts per stage, per relation and per critic of one :func:`distill_commonsense` call."""

    db: str
    seed: int
    seeds: dict[str, Any]
    events: dict[str, Any]
    entities: dict[str, int]
    applicability: dict[str, Any]
    inferences: dict[str, Any]
    relations: dict[str, dict[str, int]]
    critics: dict[str, Any]
    rounds: list[dict[str, Any]]
    stages: dict[str, dict[str, float]]
    seconds: float


def _seeds(seeds: str | Path | Sequence[str] | None) -> Seeds:
    if seeds is None or isinstance(seeds, (str, Path)):
        return read_seeds(seeds)
    out = Seeds("<list>")
    for text in dict.fromkeys(clean(str(s)) for s in seeds):
        if text:
            (out.events if "PersonX" in text else out.entities).append(text)
    if not out.events and not out.entities:
        raise UserError("seeds: the list is empty")
    return out


def _critics(specs: Sequence[str | Any], thresholds: dict[str, float] | None, teacher: str | Teacher) -> list[Any]:
    """Build the critics (unknown name or option: UserError before any teacher call)."""
    import inspect

    from symkd.critics.registry import critic_class, load_critic, parse_critic_spec

    built = []
    for spec in specs:
        if not isinstance(spec, str):
            built.append(spec)
            continue
        name, options = parse_critic_spec(spec)
        accepted = inspect.signature(critic_class(name).__init__).parameters
        extra: dict[str, Any] = {}
        if thresholds and name in thresholds and "threshold" not in options:
            extra["threshold"] = thresholds[name]
        if "teacher" in accepted and "teacher" not in options:
            extra["teacher"] = teacher  # an LLM judge uses the run's teacher unless told otherwise
        built.append(load_critic(spec, **extra))
    unknown = set(thresholds or {}) - {c.name for c in built}
    if unknown:
        raise UserError(f"thresholds: {', '.join(sorted(unknown))} is not among the critics applied")
    return built


def _apply_critics(store: Store, critics: list[Any], head_ids: list[str], progress: bool) -> dict[str, Any]:
    """Cascade over this run's heads: each critic scores the triples every earlier critic kept."""
    from symkd.critics.cascade import apply_cascade

    return apply_cascade(store, critics, where="t.head_id in (select value from json_each(?))",
                         params=[json.dumps(head_ids)], progress=progress, item_table="triples")  # fmt: skip


def distill_commonsense(
    teacher: str | Teacher,
    db: str | Path | Store,
    config: DistillConfig | dict[str, Any] | None = None,
    *,
    progress: bool = True,
    teacher_options: TeacherOptions | dict[str, Any] | None = None,
    **overrides: Any,
) -> DistillResult:
    """Run every stage into ``db``; return counts per stage and the critic report.

    ``config`` is a :class:`DistillConfig`; ``overrides`` are its fields as keywords
    (``n_events=20``, ``relations="physical"``, ``critics=()``, ...), applied on top of it.
    ``n_entities`` (default ``n_events // 5``, at least 1) caps the entity heads taken from the
    events (kept ones first, then seed events), in addition to the seed file's entity lines. ``constrain`` says which outputs the
    required/forbidden words apply to: "all", "events" or "inferences".
    """
    started = time.monotonic()
    plan = _plan(teacher, settings(DistillConfig, config, overrides))
    built = _critics(plan.config.critics, plan.config.thresholds, plan.teacher)
    session = None
    with opened(db) as store:
        try:
            session = TeacherSession(plan.teacher, store, teacher_options or {}, progress)
            found = _stages(session, store, plan, built, progress)
        finally:
            if session is not None:
                session.close()
    return _result(db, plan, found, session.stages if session else {}, started)


@dataclass
class _Plan:
    """A run's checked settings: everything a bad input fails on is parsed before the store is touched."""

    teacher: Any
    config: DistillConfig
    rels: list[str]
    seeds: Seeds
    n_entities: int
    event_words: tuple[Sequence[str], Sequence[str]]
    tail_words: tuple[Sequence[str], Sequence[str]]
    run_config: dict[str, Any]  # recorded with every stage's run


def _plan(teacher: str | Teacher, config: DistillConfig) -> _Plan:
    if config.rounds and config.student_dir is None:
        raise UserError("rounds: must be 0 or more, and rounds > 0 needs a student folder (--student-dir)")
    relations = config.relations
    rels = parse_relations(relations if relations is None or isinstance(relations, str) else list(relations))
    require, forbid = check_words(config.require_words or (), "require"), check_words(config.forbid_words or (), "forbid")
    both = {w.lower() for w in require} & {w.lower() for w in forbid}
    if both:
        raise UserError(f"{sorted(both)[0]!r} is both required and forbidden")
    seed_set = _seeds(config.seeds)
    if config.n_events and not seed_set.events:
        raise UserError(f"{seed_set.path}: no PersonX events to prompt with (for entity heads only: n_events 0)")
    n_entities = max(1, config.n_events // 5) if config.n_entities is None else config.n_entities
    spec = teacher_spec(teacher)  # parsed once, here: a bad spec fails before the store is touched
    is_heavy(spec)  # ... and so does a missing backend
    constrain = config.constrain
    run_config = {"pipeline": "commonsense", "seed": config.seed, "n_events": config.n_events, "relations": rels,
                  "samples": config.samples_per_relation, "require": list(require), "forbid": list(forbid),
                  "constrain": constrain}  # fmt: skip
    return _Plan(
        teacher=spec, config=config, rels=rels, seeds=seed_set, n_entities=n_entities,
        event_words=(require, forbid) if constrain in ("all", "events") else ((), ()),
        tail_words=(require, forbid) if constrain in ("all", "inferences") else ((), ()),
        run_config=run_config,
    )  # fmt: skip


def _stages(session: TeacherSession, store: Store, plan: _Plan, built: list[Any], progress: bool) -> dict[str, Any]:
    """events -> entity heads -> applicability -> tails (and none rows) -> critics -> student rounds."""
    c, rels, seed_set = plan.config, plan.rels, plan.seeds
    ev = events.generate_events(session, store, seed_set.events, c.n_events, seed=c.seed,
                                require=plan.event_words[0], forbid=plan.event_words[1], config=plan.run_config)  # fmt: skip
    entities = _entity_heads(store, seed_set, ev.kept, plan.n_entities) if set(rels) & set(PHYSICAL) else []
    heads = ev.kept + [e for e in entities if e not in ev.kept]
    app = applicability.decide(session, heads, rels, c.seed, plan.run_config)
    pairs = [(h, r) for r in rels for h in heads if app.verdicts.get((h, r)) == "applies"]
    inf = inferences.generate_tails(session, store, pairs, seed=c.seed, samples=c.samples_per_relation,
                                    require=plan.tail_words[0], forbid=plan.tail_words[1], config=plan.run_config)  # fmt: skip
    nones = {pair: app.provenance.get(pair, {}) for pair, v in app.verdicts.items() if v == "none"}
    new_nones = inferences.store_none_rows(store, nones)
    for head, relation in nones:
        inf.per_relation.setdefault(relation, {"tails": 0, "none": 0})["none"] += 1
    head_ids = [event_id(h) for h in heads]
    review = _apply_critics(store, built, head_ids, progress)
    student_rounds = []
    if c.rounds:
        from symkd.pipelines.commonsense.self_imitation import run_rounds

        student_rounds = run_rounds(
            store, rounds=c.rounds, critic_names=[x.name for x in built], pairs=pairs,
            apply_critics=lambda s: _apply_critics(s, built, head_ids, progress),
            student_dir=c.student_dir, train_options=c.train_options or {}, eval_data=c.eval_data,  # type: ignore[arg-type]
            eval_split=c.eval_split, samples=c.samples_per_relation, seed=c.seed, progress=progress,
        )  # fmt: skip
        review = _apply_critics(store, built, head_ids, False)  # totals now include the students' triples
    return {"events": ev, "entities": entities, "applicability": app, "inferences": inf, "nones": nones,
            "new_nones": new_nones, "review": review, "rounds": student_rounds}  # fmt: skip


def _result(db: str | Path | Store, plan: _Plan, found: dict[str, Any], stages: dict[str, Any], started: float) -> DistillResult:
    seed_set, entities, inf = plan.seeds, found["entities"], found["inferences"]
    return DistillResult(
        db=str(db if not isinstance(db, Store) else db.path),
        seed=plan.config.seed,
        seeds={"file": seed_set.path, "events": len(seed_set.events), "entities": len(seed_set.entities)},
        events=found["events"].counts,
        entities={"heads": len(entities), "from_seeds": len([e for e in entities if e in seed_set.entities])},
        applicability=found["applicability"].counts,
        inferences={**inf.counts, "none_rows": len(found["nones"]), "new_none_rows": found["new_nones"]},
        relations={r: inf.per_relation.get(r, {"tails": 0, "none": 0}) for r in plan.rels},
        critics=found["review"],
        rounds=found["rounds"],
        stages=stages,
        seconds=round(time.monotonic() - started, 1),
    )


def _entity_heads(store: Store, seed_set: Seeds, kept_events: list[str], n_entities: int) -> list[str]:
    """Seed-file entities plus up to ``n_entities`` nouns from the kept events, then from the
    seed events when the kept ones mention too few (stored as ``events`` rows of kind entity)."""
    extracted: list[str] = []
    for texts in (kept_events, seed_set.events):
        found = inferences.extract_entities(texts, n_entities + len(seed_set.entities) + len(extracted))
        extracted += [e for e in found if e not in seed_set.entities and e not in extracted]
    extracted = extracted[:n_entities]
    rows = [{"text": e, "kind": "entity", "source": "seed"} for e in seed_set.entities]
    rows += [{"text": e, "kind": "entity", "source": "extracted"} for e in extracted]
    add_events(store, rows)
    return [*seed_set.entities, *extracted]
