"""Issue-5 acceptance: teacher few-shot vs students trained on unfiltered / critic-filtered data.

On the evaluation half of ``shared/data/atomic2020/dev.tsv`` (split by head; the bundled
critic was trained on the other half, nothing here trains on either):

1. the teacher few-shot (the same per-relation prompts it distils with, temperature 0);
2. a student trained on ``--size`` triples sampled from *all* the teacher's triples;
3. a student trained on ``--size`` triples sampled from those every critic kept;
4. one self-imitation round: student 3 samples tails for the run's (head, relation) pairs,
   the same critics filter them, and a student trained on student 3's data plus the kept
   new triples.

Every student uses the same base model and hyper-parameters. ``--db`` is a run DB made by
``symkd commonsense distill`` (the teacher's answers are cached there, so reruns are quick).
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

CRITICS = ["rules", "dedupe", "classifier"]
METRICS = ["bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "cider"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", required=True, help="run DB from symkd commonsense distill (default critics applied)")
    ap.add_argument("--work", required=True, help="folder for the students and generations")
    ap.add_argument("--dev", default=None, help="ATOMIC2020 dev.tsv (default: shared/data)")
    ap.add_argument("--teacher", default="smollm2")
    ap.add_argument("--size", type=int, default=600, help="training triples per student (both sets)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--samples", type=int, default=1, help="student samples per pair in the self-imitation round")
    ap.add_argument("--pairs", type=int, default=800, help="(head, relation) pairs the student generates for")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from symkd.pipelines.commonsense.atomic import default_dev_path
    from symkd.graphs.triples import curated_triples, event_id
    from symkd.pipelines.commonsense.pipeline import _apply_critics, _critics
    from symkd.pipelines.commonsense.self_imitation import generate_round
    from symkd.store.db import Store
    from symkd.pipelines.commonsense.comet import from_triples
    from symkd.pipelines.commonsense.evaluate import evaluate_commonsense
    from symkd.students.train import TrainConfig, train

    dev = Path(args.dev) if args.dev else default_dev_path()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, dict] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn):  # noqa: ANN001, ANN202
        t = time.monotonic()
        value = fn()
        timings[name] = round(time.monotonic() - t, 1)
        print(f"[{name}] {timings[name]}s", file=sys.stderr, flush=True)
        return value

    def evaluate(name: str, **target):  # noqa: ANN003, ANN202
        report = timed(f"eval {name}", lambda: evaluate_commonsense(
            dev, split="eval", db=args.db, out=work / f"{name}.scores.json",
            save_generations=work / f"{name}.generations.jsonl", progress=False, **target))  # fmt: skip
        results[name] = {m: round(report[m], 4) for m in METRICS}
        return report

    store = Store(args.db)
    all_rows = curated_triples(store, rounds=[0])
    kept_rows = curated_triples(store, critics=CRITICS, rounds=[0])
    size = min(args.size, len(kept_rows))
    rng = random.Random(args.seed)
    unfiltered = rng.sample(all_rows, size)
    filtered = random.Random(args.seed).sample(kept_rows, size)
    in_unfiltered_dropped = size - len({r["id"] for r in unfiltered} & {r["id"] for r in kept_rows})
    print(f"triples: {len(all_rows)} teacher, {len(kept_rows)} kept; {size} per student "
          f"({in_unfiltered_dropped} of the unfiltered sample were dropped by a critic)", file=sys.stderr)  # fmt: skip

    base = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "lora": args.lora, "seed": args.seed}
    evaluate("teacher", teacher=args.teacher)

    def student(name: str, rows: list[dict], source: dict) -> dict:
        data = from_triples(rows, source)
        summary = timed(f"train {name}", lambda: train(data, TrainConfig(out=work / name, **base), progress=False))
        evaluate(name, model=work / name)
        results[name]["train_examples"] = summary["data"]["train_examples"]
        results[name]["tokens_per_s"] = summary["throughput"]["tokens_per_s"]
        results[name]["final_train_loss"] = summary["final"]["train_loss"]
        results[name]["held_out_loss"] = summary["final"]["eval_loss"]
        return summary

    student("unfiltered", unfiltered, {"kind": "db", "critics": [], "rows": size, "sample_seed": args.seed})
    summary_f = student("filtered", filtered, {"kind": "db", "critics": CRITICS, "rows": size, "sample_seed": args.seed})

    # one self-imitation round from the filtered student
    pairs = sorted({(r["head"], r["relation"]) for r in all_rows if r["tail"] != "none"})
    pairs = random.Random(args.seed).sample(pairs, min(args.pairs, len(pairs)))
    counts = timed("student generates", lambda: generate_round(store, work / "filtered", summary_f["fingerprint"], pairs,
                                                               round=1, samples=args.samples, seed=args.seed, progress=False))  # fmt: skip
    built = _critics(CRITICS, None, args.teacher)
    heads = sorted({event_id(h) for h, _ in pairs})
    timed("critics on student triples", lambda: _apply_critics(store, built, heads, False))
    new_rows = curated_triples(store, rounds=[1])
    new_kept = curated_triples(store, critics=CRITICS, rounds=[1])
    union = filtered + [r for r in new_kept if r["id"] not in {f["id"] for f in filtered}]
    student("self_imitation", union, {"kind": "db", "critics": CRITICS, "rounds": [0, 1], "rows": len(union)})
    store.close()

    f, u, t = results["filtered"], results["unfiltered"], results["teacher"]
    bar = {m: {"filtered>unfiltered": f[m] > u[m], "filtered>teacher": f[m] > t[m]} for m in ("bleu1", "rougeL")}
    out = {
        "eval_data": f"{dev} (eval half: split by head)",
        "teacher_triples": len(all_rows), "kept_by_critics": len(kept_rows), "per_student": size,
        "unfiltered_sample_dropped_by_critics": in_unfiltered_dropped,
        "self_imitation": {"pairs": len(pairs), "student_samples": counts["samples"], "new_triples": counts["new"],
                           "new_in_round_1": len(new_rows), "kept": len(new_kept), "union": len(union)},
        "config": base, "results": results, "bar_met": bar, "seconds": timings,
        "total_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    table = ["| model | train triples | bleu1 | bleu2 | bleu3 | bleu4 | rougeL | cider |", "|---|---|---|---|---|---|---|---|"]
    names = {"teacher": f"1. teacher few-shot ({args.teacher})", "unfiltered": "2. student, unfiltered",
             "filtered": "3. student, critic-filtered", "self_imitation": "4. after one self-imitation round"}  # fmt: skip
    for key, label in names.items():
        r = results[key]
        table.append(f"| {label} | {r.get('train_examples', '-')} | " + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " |")
    (work / "acceptance.json").write_text(json.dumps(out, indent=2))
    notes = "\n".join(table) + "\n\n" + "Full result: `acceptance.json` in the work folder. " + json.dumps(bar)
    flat = {"teacher_triples": len(all_rows), "kept_by_critics": len(kept_rows), "per_student": size,
            **{f"{k}.{m}": results[k][m] for k in names for m in ("bleu1", "rougeL")},
            "tokens_per_s (filtered student)": results["filtered"]["tokens_per_s"], "total_s": out["total_s"]}  # fmt: skip
    record("student_acceptance", flat, title="Students: ATOMIC2020 acceptance (eval half of dev.tsv)", notes=notes,
           write=not args.no_write)  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
