"""Student training speed: the trainer (packed and padded) vs a bare step, fp32 vs bf16, as tokens/s and MFU.

MFU = 6·N·tokens/s / peak, N = the model's parameters, peak = this machine's own measured
dense GEMM FLOP/s for that precision (square matmuls, best of 3; on a GPU next to the
PEAK_FLOPS table's figure, which the trainer's own ``training.json`` uses). The bare step is what
a hand-written loop does first: HF ``model(**batch).loss``, ``backward``, default AdamW, on the
same length-grouped, padded batches. The trainer is ``symkd.students.train.train`` on the same
examples, seed and batch size, with a held-out slice; packed and padded runs must reach the same
held-out loss (the layouts compute the same loss), and bf16 vs fp32 is the precision check.

The machine's state is part of the result: the CPU model, whether it has AVX512-BF16 (without it
bf16 is emulated and slower than fp32, so bf16 is skipped there rather than measured for
minutes), and the load average before and after (other jobs on the cores slow every figure).
``--data`` takes any training file (a chat JSONL of worked solutions has ~10x longer rows than
ATOMIC triples); ``--model`` any base model (a folder with a randomly initialised SmolLM2-sized
model measures speed where the embedded GGUF is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402


def gemm_peak(dtype, device, n: int, reps: int = 8) -> float:
    """Best FLOP/s of ``n x n @ n x n`` over 3 timed rounds (after warm-up)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def examples(n: int, path: Path | None):
    from symkd.pipelines.commonsense.atomic import default_dev_path
    from symkd.pipelines.commonsense.comet import from_triples, from_tsv
    from symkd.students.data import TrainingData, load_data

    path = path or default_dev_path()
    if path is not None and path.is_file():
        data = load_data(path) if path.suffix != ".tsv" else from_tsv(path)
        return TrainingData(data.examples[:n], {**data.source, "rows": min(n, len(data.examples))})
    heads = [f"PersonX {v} {t}" for v in ("buys", "cooks", "paints", "fixes", "finds") for t in ("a bike", "dinner", "a book")]
    rows = [(h, r, f"{tail} {i}") for i in range(n) for h in heads for r, tail in (("xReact", "happy"), ("xNeed", "to save money"))]
    return from_triples(rows[:n])


def bare_step(model_name: str, data, batch_size: int, steps: int, bf16: bool, device) -> float:
    """Tokens/s of forward + backward + AdamW on the trainer's batches (first step untimed)."""
    import torch

    from symkd.students.batching import collate, epoch_batches
    from symkd.students.data import tokenize
    from symkd.students.modeling import load_causal_lm

    torch.manual_seed(0)
    loaded = load_causal_lm(model_name, device=device, dtype=torch.float32)
    model, tok = loaded.model, loaded.tokenizer
    toks = [t for t in (tokenize(e, tok) for e in data.examples) if t is not None]
    batches = epoch_batches([len(t.input_ids) for t in toks], batch_size, 0, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tokens, seconds = 0, 0.0
    for k, b in enumerate(batches[: steps + 1]):
        batch = collate([toks[i] for i in b], tok.pad_token_id)
        batch = {key: batch[key].to(device) for key in ("input_ids", "attention_mask", "labels")}
        sync()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)
        if k:
            tokens, seconds = tokens + int(batch["attention_mask"].sum()), seconds + time.perf_counter() - t
    return tokens / max(seconds, 1e-9)


def trainer(model_name: str, data, args, precision: str, packing: bool) -> dict:
    from symkd.students.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        config = TrainConfig(out=Path(tmp) / "s", base_model=model_name, max_steps=args.steps, batch_size=args.batch_size,
                             lr=1e-4, eval_fraction=0.1, eval_every=max(1, args.steps // 2), save_every=args.steps,
                             device=args.device, precision=precision, packing=packing, seed=0)  # fmt: skip
        return train(data, config, progress=False)


def machine_state() -> dict:
    from symkd.students.summary import _cpu_name
    from symkd.students.modeling import cpu_has_bf16

    return {"cpu": _cpu_name(), "cpu_avx512_bf16": cpu_has_bf16(), "cores": os.cpu_count(),
            "load_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def measure(args, device, peak: dict, data) -> tuple[dict, dict]:
    """Trainer (packed, padded) and bare-step figures per precision; (flat result, summaries)."""
    from symkd.students.modeling import cpu_has_bf16

    precisions = [p for p in args.precisions.split(",") if p]
    if device.type == "cpu" and "bf16" in precisions and not cpu_has_bf16():
        precisions.remove("bf16")  # emulated: slower than fp32, and minutes to measure
    layouts = {"on": [True], "off": [False], "both": [True, False]}[args.packing]
    result, runs = {"precisions": precisions}, {}
    for precision in precisions:
        if args.bare_steps:  # first: it also warms up this precision's kernels for the trainer runs
            bare = bare_step(args.model, data, args.batch_size, args.bare_steps, precision == "bf16", device)
            result[f"{precision}.bare_tokens_per_s"] = round(bare, 1)
        for packing in layouts:
            key = f"{precision}.{'packed' if packing else 'padded'}"
            summary = runs[key] = trainer(args.model, data, args, precision, packing)
            speed, params = summary["throughput"], summary["parameters"]["total"]
            result.update({f"{key}.tokens_per_s": speed["tokens_per_s"],
                           f"{key}.mfu_measured_peak": round(6 * params * speed["tokens_per_s"] / peak[precision], 4),
                           f"{key}.mfu_table_peak": speed.get("mfu"), f"{key}.wall_tokens_per_s": speed["wall_tokens_per_s"],
                           f"{key}.eval_loss": summary["final"]["eval_loss"]})  # fmt: skip
    return result, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2", help="student base model")
    ap.add_argument("--data", type=Path, help="training file (default: the ATOMIC2020 dev.tsv triples, else synthetic)")
    ap.add_argument("--examples", type=int, default=600, help="first N examples of the data")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="trainer optimizer steps per run")
    ap.add_argument("--bare-steps", type=int, default=8, help="timed bare steps per precision (0: skip)")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list; bf16 is skipped on CPUs without AVX512-BF16")
    ap.add_argument("--packing", choices=("on", "off", "both"), default="both", help="trainer layouts to measure")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    import torch

    from symkd.students.summary import PEAK_FLOPS
    from symkd.students.modeling import pick_device

    device = pick_device(args.device)[0]
    result: dict = {"device": device.type, **machine_state(), "torch_threads": torch.get_num_threads()}
    n = 8192 if device.type == "cuda" else 2048
    peak = {"fp32": gemm_peak(torch.float32, device, n)}
    if device.type == "cuda" or result["cpu_avx512_bf16"]:
        peak["bf16"] = gemm_peak(torch.bfloat16, device, n)
    result.update({f"peak_gflops_{k}": round(v / 1e9, 1) for k, v in peak.items()})
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        result["gpu"] = name
        result["table_peak_tflops_bf16"] = next((v / 1e12 for k, v in PEAK_FLOPS.items() if k in name), None)
    data = examples(args.examples, args.data)
    figures, runs = measure(args, device, peak, data)
    result.update(figures)
    first = next(iter(runs.values()))
    result.update({"parameters": first["parameters"]["total"], "train_examples": first["data"]["train_examples"],
                   "eval_examples": first["data"]["eval_examples"], "tokens_per_step": round(first["throughput"]["tokens"] / args.steps),
                   "hardware": first["hardware"]["description"], "load_after": [round(x, 2) for x in os.getloadavg()]})  # fmt: skip
    pairs = [(f"{p}.packed.eval_loss", f"{p}.padded.eval_loss") for p in result["precisions"]]
    deltas = {a.split(".")[0]: round(result[a] - result[b], 5) for a, b in pairs if result.get(a) is not None and b in result}
    if deltas:
        result["eval_loss_packed_minus_padded"] = deltas
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    notes = (f"{result['train_examples']} examples of {data.source.get('path', 'synthetic triples')} (held out "
             f"{result['eval_examples']}), batch {args.batch_size}, {args.steps} trainer steps per run, seed 0; "
             f"~{result['tokens_per_step']} tokens per step. Load average before {result['load_before']}, after "
             f"{result['load_after']} on {result['cores']} cores: other jobs sharing the cores lower every tokens/s figure. "
             "MFU = 6·N·tokens/s over the GEMM peak measured at start. Trainer: packed rows (or padded, "
             "`padded`), fused AdamW, logits only at target positions, eager attention for short CPU rows, one sync "
             "per step; tokens/s counts steps, `wall` adds held-out evaluation and checkpoints.")  # fmt: skip
    record("train_speed", result, title="Student training speed (bench/train_speed.py)", notes=notes, write=not args.no_write)


if __name__ == "__main__":
    main()
