"""Triples per second scored by the MiniLM classifier critic on the CPU (target >= 500/s).

Triples come from the shared ATOMIC2020 dev.tsv (references, then the same tails under other
relations, until ``--n`` distinct triples) or, without it, from a synthetic generator. The
critic is loaded and warmed up on other triples first; its embedding cache is emptied
before each timed pass, which goes through ``critic.score`` in the critic's batches. The
machine may be shared: ``--repeat`` passes, the best and the median are reported.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402

from symkd.pipelines.commonsense.relations import RELATIONS  # noqa: E402


def dev_triples(n: int) -> list[tuple[str, str, str]] | None:
    from symkd.pipelines.commonsense.atomic import default_dev_path, read_atomic_tsv

    path = default_dev_path()
    if path is None or not path.is_file():
        return None
    lines = read_atomic_tsv(path)
    refs = [(ln.head, ln.relation, t) for ln in lines for t in ln.tails]
    extra = ((h, r2, t) for r2 in RELATIONS for h, r, t in refs if r2 != r)
    out = list(dict.fromkeys(itertools.chain(refs, extra)).keys())
    return out[:n] if len(out) >= n else None


def synthetic_triples(n: int) -> list[tuple[str, str, str]]:
    verbs = ["buys", "cooks", "paints", "fixes", "borrows", "finds", "loses", "cleans", "sells", "builds"]
    things = ["a bike", "dinner", "the fence", "a laptop", "PersonY's car", "a book", "the garden", "a cake"]
    tails = ["to be happy", "tired", "proud", "to go home", "gets paid", "to say thanks", "a tool", "money"]
    heads = [f"PersonX {v} {t}" for v in verbs for t in things]
    rels = list(RELATIONS)
    gen = ((h, r, f"{t} {i}") for i in itertools.count() for h in heads for r in rels for t in tails)
    return list(itertools.islice(gen, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000, help="triples in the timed pass")
    ap.add_argument("--batch-size", type=int, default=512, help="triples per critic.score call")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes (best and median reported)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic triples even when dev.tsv is there")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    import torch

    from symkd.pipelines.commonsense.critics.classifier import ClassifierCritic

    torch.set_num_threads(args.threads)
    triples = None if args.synthetic else dev_triples(args.n + 512)
    source = "dev.tsv" if triples else "synthetic"
    triples = triples or synthetic_triples(args.n + 512)
    warm, timed = triples[args.n :], triples[: args.n]
    items = [{"id": str(i), "head": h, "relation": r, "tail": t} for i, (h, r, t) in enumerate(timed)]

    t0 = time.perf_counter()
    critic = ClassifierCritic(device="cpu", batch_size=args.batch_size)
    critic.score([{"id": "w", "head": h, "relation": r, "tail": t} for h, r, t in warm])
    load_s = time.perf_counter() - t0

    passes = []
    for _ in range(max(1, args.repeat)):
        critic.encoder.clear_cache()
        start = time.perf_counter()
        kept = 0
        for i in range(0, len(items), critic.batch_size):
            kept += sum(v.keep for v in critic.score(items[i : i + critic.batch_size]))
        passes.append(time.perf_counter() - start)
    seconds = min(passes)

    result = {
        "triples": len(items),
        "source": source,
        "distinct_heads": len({h for h, _, _ in timed}),
        "batch_size": critic.batch_size,
        "threads": torch.get_num_threads(),
        "model": critic.version,
        "load_and_warmup_s": round(load_s, 2),
        "passes": len(passes),
        "best_pass_s": round(seconds, 2),
        "triples_per_s": round(len(items) / seconds, 1),
        "median_triples_per_s": round(len(items) / statistics.median(passes), 1),
        "kept": kept,
        "target_triples_per_s": 500,
    }
    record(
        "critic_speed",
        result,
        title="Classifier critic speed (MiniLM, CPU)",
        notes="Best of `passes` timed passes over `critic.score` in batches (the CPU is shared with other "
        "work; the median is reported too), embedding cache emptied before each (heads repeat "
        "inside the pass, as they do in generated data: one head embedding per distinct head, one tail "
        "embedding per distinct tail). Model load and warm-up excluded (`load_and_warmup_s`).",
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
