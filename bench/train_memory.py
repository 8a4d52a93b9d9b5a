"""Student training memory on the CPU: RSS between steps and its peak, with and without giving the heap back.

Each mode trains the same student on the same examples in a fresh process (a clean heap) and
reads ``/proc/self/status`` after every optimizer step: ``VmRSS`` (what the process holds
between steps) and at the end ``VmHWM`` (its peak). Modes (see ``symkd.memory``):

* ``never``: glibc keeps every freed block (what the trainer did before ``symkd.memory``);
* ``short``: the trainer's default, ``malloc_trim`` only when less than 25 % of memory is available;
* ``every``: ``malloc_trim`` after every step (its cost: the next step page-faults its memory back).

``--pad-multiples 1,64`` runs each mode once per width multiple (``TrainConfig.pad_multiple``):
memory grows with the number of distinct micro-batch widths, and rounding them up trades pad
columns (compute) for fewer shapes.

Data: GSM8K worked solutions (the first ``--examples`` train problems of
``../shared/data/gsm8k``, as ``agent export-cot`` writes them) or ``--data`` (any chat JSONL), e.g.
agent trajectories, whose rows are wider and whose steps hold more memory:

    symkd agent export --db GOLD_DB --source gold-rationales -o trajectories.jsonl
    python bench/train_memory.py --data trajectories.jsonl --examples 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402

MODES = ("never", "short", "every")


def status_mb(field: str) -> int:
    return next(int(ln.split()[1]) // 1024 for ln in open("/proc/self/status") if ln.startswith(field + ":"))


def examples(args: argparse.Namespace, folder: Path):
    from symkd.students.data import TrainingData, load_data

    if args.data:
        data = load_data(args.data)
        return TrainingData(data.examples[: args.examples], data.source)
    from symkd.pipelines.agents.export import cot_record
    from symkd.pipelines.agents.gsm8k import read_tasks
    from symkd.students.data import from_jsonl

    path = folder / "cot.jsonl"
    tasks = read_tasks(args.gsm8k / "train.jsonl", limit=args.examples)
    path.write_text("".join(json.dumps(cot_record(t)) + "\n" for t in tasks))
    return from_jsonl(path)


def child(args: argparse.Namespace) -> dict:
    """One mode in this process: RSS after each step, the peak, tokens/s."""
    import symkd.students.loop as loop
    from symkd.memory import release_freed_heap
    from symkd.students.train import TrainConfig, train

    trims = {"n": 0}

    def trim_every() -> bool:
        trims["n"] += 1
        return release_freed_heap()

    def counted_short(original=loop.release_if_short) -> bool:
        done = original()
        trims["n"] += done
        return done

    loop.release_if_short = {"never": lambda: False, "every": trim_every, "short": counted_short}[args.mode]
    after: list[int] = []
    step = loop.Run.step

    def measured(self):
        row = step(self)
        after.append(status_mb("VmRSS"))
        return row

    loop.Run.step = measured
    with tempfile.TemporaryDirectory(prefix="train-memory-") as tmp:
        data = examples(args, Path(tmp))
        config = TrainConfig(out=Path(tmp) / "s", base_model=args.model, epochs=1, batch_size=args.batch_size,
                             max_length=args.max_length, lr=1e-4, eval_fraction=0.0, seed=0,
                             pad_multiple=args.pad_multiple)  # fmt: skip
        summary = train(data, config, progress=False)
    return {"steps": len(after), "tokens_per_s": summary["throughput"]["tokens_per_s"], "trims": trims["n"],
            "rss_first_step_mb": after[0], "rss_max_between_steps_mb": max(after), "rss_last_step_mb": after[-1],
            "peak_rss_mb": status_mb("VmHWM")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data", type=Path, help="a chat JSONL to train on (default: GSM8K worked solutions)")
    ap.add_argument("--gsm8k", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=640)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--pad-multiples", default="1", help="comma list of micro-batch width multiples, each run per mode")
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--pad-multiple", type=int, default=1, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(child(args)))
        return
    result: dict = {"examples": args.examples, "data": str(args.data or "gsm8k worked solutions"),
                    "batch_size": args.batch_size, "load_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    multiples = [int(m) for m in args.pad_multiples.split(",")]
    argv = ["--model", args.model, "--gsm8k", str(args.gsm8k), "--examples", str(args.examples), "--batch-size",
            str(args.batch_size), "--max-length", str(args.max_length), *(["--data", str(args.data)] if args.data else [])]  # fmt: skip
    for mode in args.modes.split(","):
        for multiple in multiples:
            name = mode if multiples == [1] else f"{mode}.pad{multiple}"
            cmd = [sys.executable, __file__, *argv, "--mode", mode, "--pad-multiple", str(multiple)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"train_memory: {name} failed: {out.stderr.strip().splitlines()[-1:]}")
            result.update({f"{name}.{k}": v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()})
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    notes = ("One epoch per mode, each in a fresh process, batch and data as listed. `rss_*_between_steps`: VmRSS "
             "after each optimizer step; `peak_rss_mb`: VmHWM (the widest step's live activations). `never` is what "
             "glibc does unaided, `every` trims after each step, `short` (the trainer's default) only when less than "
             "25 % of memory is available, which a quiet machine with room never reaches: it then costs nothing. "
             "Other jobs on the cores lower every tokens/s figure (load average before and after). Agent "
             "trajectories for `--data`: `symkd agent export --db GOLD_DB --source gold-rationales -o FILE` (the gold "
             "DB bench/agent_acceptance.py converts).")  # fmt: skip
    if multiples != [1]:  # a section of its own: the width comparison does not replace the trim modes
        record("train_memory_widths", result, title="Student training memory by micro-batch width multiple "
               "(bench/train_memory.py --pad-multiples)", notes=notes, write=not args.no_write)  # fmt: skip
        return
    record("train_memory", result, title="Student training memory on the CPU (bench/train_memory.py)", notes=notes,
           write=not args.no_write)  # fmt: skip


if __name__ == "__main__":
    main()
