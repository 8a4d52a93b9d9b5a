"""CPU training step time by attention implementation and row width: where eager stops paying.

The trainer picks eager attention for a CPU micro-batch up to
``symkd.students.modeling.EAGER_ATTENTION_MAX_WIDTH`` tokens (and while its kept scores fit in
``EAGER_ATTENTION_BYTES``), sdpa beyond (``training_attention``). This
times one forward + backward of the student (the trainer's own loss path: ``loss_sums`` with logits
only at target positions, bf16 autocast where the CPU has AVX512-BF16) on packed micro-batches of
``--rows`` rows of ``--widths`` tokens packed from real examples as the trainer packs them (so with
its per-sequence mask), with each implementation, best and median of ``--reps`` after a warm-up, as
tokens/s (real tokens, not padding). It answers the question the threshold encodes (the rows are
the same, only the attention kernel differs).

    python bench/attention_widths.py --data trajectories.jsonl --widths 256,320,384,448 --out /tmp/attn.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402


def rows_of(path: Path, count: int, width: int, tokenizer, seed: int = 0) -> list:
    """Examples that fill ``count`` rows of ``width`` tokens the way the trainer packs them
    (first-fit decreasing, ``pack_rows``; rows less than the CPU pad multiple short of
    ``width``), so each row has the trainer's mask: several examples and/or trailing padding, each its
    own sequence. Labels as the trainer has them (on the completions only)."""
    import random

    from symkd.students.batching import pack_rows
    from symkd.students.data import load_data, tokenize
    from symkd.students.loop import CPU_PAD_MULTIPLE

    items = [t for t in (tokenize(e, tokenizer) for e in load_data(path).examples) if t is not None]
    items = [t for t in items if len(t.input_ids) <= width]
    random.Random(seed).shuffle(items)
    rows = [r for r in pack_rows([len(t.input_ids) for t in items], width)
            if sum(len(items[i].input_ids) for i in r) > width - CPU_PAD_MULTIPLE][:count]  # fmt: skip
    if len(rows) < count:
        raise SystemExit(f"attention_widths: fewer than {count} rows of {width} tokens can be packed from {path}")
    return [items[i] for r in rows for i in r]


def time_step(model, batch: dict, implementation: str, reps: int, bf16: bool) -> list[float]:
    """Seconds of forward + backward (the trainer's loss) per rep, after one warm-up."""
    import torch

    from symkd.students.modeling import set_attention
    from symkd.students.steps import loss_sums

    set_attention(model, implementation)
    times = []
    for _ in range(reps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            objective, _, _ = loss_sums(model, None, None, batch, True)
        objective.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    from symkd.students.batching import collate
    from symkd.students.loop import CPU_PAD_MULTIPLE
    from symkd.students.modeling import cpu_has_bf16, load_causal_lm, load_tokenizer
    from symkd.threads import apply_torch_threads

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="a chat JSONL (e.g. agent trajectories)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--widths", default="256,320,384,448")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="which examples fill the rows")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    apply_torch_threads()
    tokenizer, model = load_tokenizer(args.model), load_causal_lm(args.model).model
    model.train()
    bf16 = cpu_has_bf16()
    result: dict = {"rows": args.rows, "data": str(args.data), "bf16": bf16, "reps": args.reps,
                    "load_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    for width in [int(w) for w in args.widths.split(",")]:
        items = rows_of(args.data, args.rows, width, tokenizer, args.seed)
        batch = collate(items, tokenizer.pad_token_id or 0, pack=width, multiple_of=CPU_PAD_MULTIPLE)
        tokens = sum(len(t.input_ids) for t in items)
        for implementation in ("eager", "sdpa"):
            times = time_step(model, batch, implementation, args.reps, bf16)
            result[f"w{width}.{implementation}.tokens_per_s_best"] = round(tokens / min(times), 1)
            result[f"w{width}.{implementation}.tokens_per_s_median"] = round(tokens / statistics.median(times), 1)
            print(width, implementation, f"{tokens} tokens", [round(t, 2) for t in times], flush=True)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    record("attention_widths", result, title="CPU training step by attention implementation and width "
           "(bench/attention_widths.py)", notes="One forward + backward of the trainer's loss per rep on "
           f"{args.rows} rows of each width packed from real examples as the trainer packs them (per-sequence "
           "mask); tokens/s = real tokens / seconds, after one warm-up rep. The trainer's choice "
           "(`symkd.students.modeling.training_attention`) follows these figures.",
           write=not args.no_write)  # fmt: skip


if __name__ == "__main__":
    main()
