"""The learn loop: attempts -> proposals -> rule critic -> measured acceptance -> library, K rounds.

Each round works on the scenario pool as the round found it (dataset scenarios plus synthetic
ones from earlier rounds) and the library as it stood when the round began. Every generation
goes through the cache, and everything a round decides is written in one transaction at its
end, with its ``strategy_rounds`` row: a killed run leaves no half-written round, and the
rerun replays the finished rounds' answers from the cache, skips them, and goes on.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Sequence

import numpy as np

from symkd.store.db import Store, utcnow
from symkd.pipelines.strategies import library as lib
from symkd.pipelines.strategies.acceptance import Attempt, Candidate, Scorer, Trial, evaluate, near_duplicate
from symkd.pipelines.strategies.critic import StrategyLeakCritic
from symkd.pipelines.strategies.options import LearnConfig
from symkd.pipelines.strategies.proposals import PROPOSE_TEMPLATE, ProposalStage, candidate_id, infer_tags
from symkd.pipelines.strategies.retrieval import rank
from symkd.pipelines.strategies.scenarios import Scenario, ScenarioStage
from symkd.prompts import get_template
from symkd.session import TeacherSession
from symkd.stages import run_stage

__all__ = ["LearnConfig", "Round", "commit_round", "finished_rounds", "learn_id_of", "load_pool", "record_pool"]


def learn_id_of(teacher: str, scorer: dict[str, Any], data_digest: str, config: LearnConfig) -> str:
    payload = json.dumps({"teacher": teacher, "scorer": scorer, "data": data_digest, "config": config.identity()}, sort_keys=True)
    return "L" + hashlib.sha256(payload.encode()).hexdigest()[:11]


class Round:
    """One round of one learn run (state is read from the store, so a resumed round is the same)."""

    def __init__(self, store: Store, learn_id: str, number: int, config: LearnConfig, scorer: Scorer,
                 teacher: TeacherSession, teacher_name: str, progress: bool = True):  # fmt: skip
        self.store, self.learn_id, self.number, self.config = store, learn_id, number, config
        self.scorer, self.teacher, self.teacher_name, self.progress = scorer, teacher, teacher_name, progress
        self.pool = load_pool(store, learn_id, before_round=number)
        from symkd.embeddings import encode

        self.vectors = encode([s.question for s in self.pool])
        self.row_of = {s.id: i for i, s in enumerate(self.pool)}
        self.library, self.matrix = lib.library(store, before=(learn_id, number))
        self._guidance: dict[str, tuple[str, ...]] = {}

    def guidance(self, scenario: Scenario) -> tuple[str, ...]:
        if scenario.id not in self._guidance:
            hits = rank(self.library, self.matrix, self.vectors[self.row_of[scenario.id]],
                        k=self.config.k, min_similarity=self.config.min_similarity)  # fmt: skip
            self._guidance[scenario.id] = tuple(h.text for h in hits)
        return self._guidance[scenario.id]

    def run(self) -> dict[str, Any]:
        attempts = self.scorer.attempt([Trial(s, self.guidance(s)) for s in self.pool], stage=f"round {self.number}: attempts")
        failed = [(s, a) for s, a in zip(self.pool, attempts) if not a.correct]
        targets = self.targets(failed)
        candidates, rejected = self.propose(targets)
        evaluate(candidates, self.pool, self.vectors, self.guidance, self.scorer, self.config.acceptance())
        new_scenarios = self.synthesize([s for s, _ in targets])
        accuracy = round(sum(a.correct for a in attempts) / len(attempts), 4) if attempts else 0.0
        return {"attempts": attempts, "failed": len(failed), "accuracy": accuracy, "candidates": candidates,
                "rejected": rejected, "synthetic": new_scenarios}  # fmt: skip

    def targets(self, failed: list[tuple[Scenario, Attempt]]) -> list[tuple[Scenario, Attempt]]:
        """Failures not yet targeted by this learn run first (seeded order), then the rest."""
        done = {sid for row in self.store.query("select source_scenarios from strategies where learn_id = ?", (self.learn_id,))
                for sid in json.loads(row["source_scenarios"])}  # fmt: skip
        rng = random.Random(f"{self.config.seed}:{self.number}")
        order = sorted(failed, key=lambda f: (f[0].id in done, rng.random()))
        return order[: self.config.per_round]

    def propose(self, targets: list[tuple[Scenario, Attempt]]) -> tuple[list[Candidate], list[lib.Strategy]]:
        if not targets:
            return [], []
        answers = run_stage(self.teacher, ProposalStage(self.number), [(s, a.text or str(a.answer)) for s, a in targets],
                            label=f"round {self.number}: proposals")  # fmt: skip
        critic = StrategyLeakCritic()
        candidates, rejected, seen = [], [], set()
        for answer in answers:
            (scenario, _), item_key = answer.row, answer.key
            text = answer.parsed or ""
            cid = candidate_id(self.learn_id, self.number, scenario.id, text)
            if cid in seen:
                continue
            seen.add(cid)
            reason = critic.reason({"text": text, **scenario.as_dict()}) if text else "empty"
            strategy = self.strategy(cid, text or "(empty)", scenario, item_key)
            if reason:
                strategy.status, strategy.reason = "rejected", f"{critic.name}: {reason}"
                strategy.evidence = {"critic": critic.describe(), "decision": "rejected", "reason": reason}
                rejected.append(strategy)
            else:
                candidates.append(Candidate(cid, text, scenario, response_key=item_key))
        return candidates, rejected

    def strategy(self, cid: str, text: str, scenario: Scenario, response_key: str | None) -> lib.Strategy:
        template = get_template(PROPOSE_TEMPLATE)
        return lib.Strategy(cid, text, "accepted", infer_tags(scenario.question, text), [scenario.id], learn_id=self.learn_id,
                            round=self.number, teacher=self.teacher_name, template_id=template.id,
                            template_version=template.version, response_key=response_key)  # fmt: skip

    def synthesize(self, failed: Sequence[Scenario]) -> list[Scenario]:
        if not self.config.synthetic or not failed:
            return []
        stage = ScenarioStage(self.config.seed, self.number)
        answers = run_stage(self.teacher, stage, stage.rows(failed, self.config.synthetic),
                            label=f"round {self.number}: scenarios")  # fmt: skip
        known = {s.question for s in self.pool}
        out = []
        for answer in answers:
            new = answer.parsed
            if new is not None and new.question not in known:
                known.add(new.question)
                out.append(new)
        return out


def load_pool(store: Store, learn_id: str, *, before_round: int) -> list[Scenario]:
    rows = store.query("select * from strategy_scenarios where learn_id = ? and round < ? order by round, rowid",
                       (learn_id, before_round))  # fmt: skip
    fields = Scenario.__dataclass_fields__
    return [Scenario(**{k: r[k] for k in fields}) for r in rows]


def record_pool(store: Store, learn_id: str, scenarios: Sequence[Scenario], response_keys: dict[str, str] | None = None) -> None:
    now = utcnow()
    rows = [{**s.as_dict(), "learn_id": learn_id, "response_key": (response_keys or {}).get(s.id), "created_at": now}
            for s in scenarios]  # fmt: skip
    if rows:
        with store.transaction() as db:
            db["strategy_scenarios"].insert_all(rows, pk=("learn_id", "id"), ignore=True)


def commit_round(store: Store, rnd: Round, outcome: dict[str, Any], config_json: str) -> dict[str, Any]:
    """Write everything the round decided, and its row, in one transaction."""
    from symkd.embeddings import encode

    counts = {"accepted": 0, "rejected": len(outcome["rejected"]), "merged": 0}
    with store.transaction() as db:
        for strategy in outcome["rejected"]:
            lib.insert(store, strategy, None, editor="learn")
        current, matrix = lib.library(store)
        ids = [s.id for s in current]
        for cand in outcome["candidates"]:
            strategy = rnd.strategy(cand.id, cand.text, cand.scenario, cand.response_key)
            strategy.evidence = cand.evidence
            strategy.status = cand.evidence["decision"]
            strategy.reason = cand.evidence["reason"]
            vector = encode([cand.text])[0]
            lib.insert(store, strategy, vector, editor="learn")
            if strategy.status != "accepted":
                counts["rejected"] += 1
                continue
            dup = near_duplicate(vector, matrix, rnd.config.merge_threshold)
            if dup is not None:
                lib.merge(store, cand.id, ids[dup[0]], dup[1])
                counts["merged"] += 1
                continue
            counts["accepted"] += 1
            matrix = np.vstack([matrix, vector[None, :]]) if matrix.size else vector[None, :]
            ids.append(cand.id)
        record_pool(store, rnd.learn_id, outcome["synthetic"])
        row = {"learn_id": rnd.learn_id, "round": rnd.number, "scenarios": len(rnd.pool), "failed": outcome["failed"],
               "accuracy": outcome["accuracy"], "proposals": len(outcome["candidates"]) + len(outcome["rejected"]),
               "critic_rejected": len(outcome["rejected"]), **counts, "synthetic": len(outcome["synthetic"]),
               "library_size": len(ids), "config": config_json, "finished_at": utcnow()}  # fmt: skip
        db["strategy_rounds"].insert(row, pk=("learn_id", "round"), replace=True)
    return row


def finished_rounds(store: Store, learn_id: str) -> list[dict[str, Any]]:
    return store.query("select * from strategy_rounds where learn_id = ? order by round", (learn_id,))

