"""Strategies acceptance: does a learned strategy library help the student on GSM8K test?

1. ``learn_strategies`` on a seeded sample of ``--scenarios`` GSM8K *train* problems
   (teacher and student: the embedded SmolLM2-135M unless told otherwise).
2. On the first ``--n-test`` problems of GSM8K *test*, the student (greedy CoT, same template
   and token budget as in learning) answers three ways:
   - no strategies;
   - the top-k retrieved strategies (cosine >= min similarity);
   - the same number of accepted strategies drawn at random (seeded per question).
   Paired outcomes give sign-test p-values of "retrieved vs none" and "retrieved vs random".

Every generation is cached in ``--db``: a rerun replays it. Result JSON to ``--out`` and the
``strategies_acceptance`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "gsm8k"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", default=str(SHARED / "train.jsonl"))
    ap.add_argument("--test", default=str(SHARED / "test.jsonl"))
    ap.add_argument("--db", default="/tmp/strategies_bench.db")
    ap.add_argument("--out", default="/tmp/strategies_bench.json")
    ap.add_argument("--teacher", default="smollm2")
    ap.add_argument("--student", default="smollm2")
    ap.add_argument("--n-test", type=int, default=30, help="first N test problems")
    ap.add_argument("--scenarios", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=6)
    ap.add_argument("--validation", type=int, default=4)
    ap.add_argument("--control", type=int, default=4)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--min-similarity", type=float, default=0.3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    return ap.parse_args()


def evaluate(args: argparse.Namespace, store, session) -> dict:
    from symkd.pipelines.agents import read_tasks
    from symkd.pipelines.strategies import Retriever, Trial, sign_test
    from symkd.pipelines.strategies.scenarios import Scenario
    from symkd.pipelines.strategies.student import StudentScorer

    tasks = read_tasks(args.test, limit=args.n_test)
    scenarios = [Scenario(t.id, t.question, t.answer, t.solution) for t in tasks]
    retriever = Retriever(store)
    accepted = [s.text for s in retriever.strategies]
    retrieved, randomized = [], []
    for s in scenarios:
        hits = tuple(h.text for h in retriever.retrieve(s.question, k=args.k, min_similarity=args.min_similarity))
        rng = random.Random(f"random:{s.id}")
        retrieved.append(hits)
        randomized.append(tuple(rng.sample(accepted, len(hits))) if hits else ())
    scorer = StudentScorer(session, max_tokens=args.max_tokens)
    conditions = {"none": [()] * len(scenarios), "retrieved": retrieved, "random": randomized}
    outcomes = {}
    for name, guidance in conditions.items():
        attempts = scorer.attempt([Trial(s, g) for s, g in zip(scenarios, guidance)], stage=f"test: {name}")
        outcomes[name] = [a.correct for a in attempts]

    def paired(a: str, b: str) -> dict:
        up = sum(x and not y for x, y in zip(outcomes[a], outcomes[b]))
        down = sum(y and not x for x, y in zip(outcomes[a], outcomes[b]))
        return {"better": up, "worse": down, "p_one_sided": sign_test(up, down)}

    n = len(scenarios)
    return {
        "n_test": n,
        "acc_none": round(sum(outcomes["none"]) / n, 4),
        "acc_retrieved": round(sum(outcomes["retrieved"]) / n, 4),
        "acc_random": round(sum(outcomes["random"]) / n, 4),
        "test_with_any_retrieved": sum(bool(g) for g in retrieved),
        "mean_retrieved": round(sum(len(g) for g in retrieved) / n, 3),
        "retrieved_vs_none": paired("retrieved", "none"),
        "retrieved_vs_random": paired("retrieved", "random"),
    }


def main() -> None:
    args = parse_args()
    for path in (args.train, args.test):
        if not Path(path).is_file():
            sys.exit(f"missing {path}")
    from symkd.pipelines.strategies import learn_strategies
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    started = time.monotonic()
    report = learn_strategies(args.teacher, args.db, data=args.train, student=args.student, rounds=args.rounds,
                              scenarios=args.scenarios, per_round=args.per_round, n_validation=args.validation,
                              n_control=args.control, k=args.k, min_similarity=args.min_similarity,
                              student_max_tokens=args.max_tokens, progress=False)  # fmt: skip
    learn_s = time.monotonic() - started
    store = Store(args.db)
    try:
        with TeacherSession(args.student, store, progress=False) as session:
            test = evaluate(args, store, session)
    finally:
        store.close()
    result = {
        "teacher": args.teacher, "student": args.student, "train_scenarios": args.scenarios, "rounds": args.rounds,
        "per_round": args.per_round, "validation_n": args.validation, "control_n": args.control,
        "student_max_tokens": args.max_tokens, "proposals": report.proposals, "accepted": report.accepted,
        "acceptance_rate": report.acceptance_rate, "library_size": report.library_size,
        "critic_rejected": sum(r["critic_rejected"] for r in report.rounds),
        "pool_accuracy_by_round": [r["accuracy"] for r in report.rounds],
        **{k: v for k, v in test.items() if not isinstance(v, dict)},
        "retrieved_vs_none": json.dumps(test["retrieved_vs_none"]), "retrieved_vs_random": json.dumps(test["retrieved_vs_random"]),
        "learn_s": round(learn_s, 1), "total_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    Path(args.out).write_text(json.dumps({**result, "rounds_detail": report.rounds}, indent=2) + "\n")
    notes = (
        f"Strategies learned only from a seeded sample of {args.scenarios} GSM8K train problems; evaluated on the first "
        f"{args.n_test} problems of GSM8K test. Teacher and student: the embedded SmolLM2-135M-Instruct (no larger model "
        "is available here), greedy decoding. `random` gives each test question as many randomly drawn accepted "
        "strategies as retrieval found for it, so `retrieved` vs `random` asks whether retrieval matters. "
        "p-values: one-sided exact sign test on paired outcomes. Full result: " + args.out + "."
    )
    record("strategies_acceptance", result, title="Strategies: learned library on GSM8K test (bench/strategies_acceptance.py)",
           notes=notes, write=not args.no_record)  # fmt: skip


if __name__ == "__main__":
    main()
