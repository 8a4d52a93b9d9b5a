"""Student training speed: the trainer vs a bare step, fp32 vs bf16, as tokens/s and MFU.

MFU = 6·N·tokens/s / peak, N = the model's parameters, peak = this machine's own measured
dense GEMM FLOP/s for that precision (square matmuls, best of 3; on a GPU too, next to the
PEAK_FLOPS table's figure). The bare step is what a hand-written loop does first: HF
``model(**batch).loss``, ``backward``, default AdamW, on the same length-grouped batches. The
trainer is ``symkd.students.train.train`` on the same examples, seed and batch size, with a
held-out slice; its held-out loss in fp32 vs bf16 is the quality check (``eval_loss_delta``).
Trainer tokens/s counts training steps; ``wall`` adds the held-out evaluations and checkpoints.
"""

from __future__ import annotations

import argparse
import json
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


def examples(n: int):
    from symkd.knowledge.atomic import default_dev_path
    from symkd.students.data import TrainingData, from_triples, from_tsv

    path = default_dev_path()
    if path is not None and path.is_file():
        data = from_tsv(path)
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
    toks = [t for t in (tokenize(e, tok, 128) for e in data.examples) if t is not None]
    batches = epoch_batches([len(t.input_ids) for t in toks], batch_size, 0, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    tokens, seconds = 0, 0.0
    for k, b in enumerate(batches[: steps + 1]):
        batch = {key: v.to(device) for key, v in collate([toks[i] for i in b], tok.pad_token_id).items()}
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)
        if k:
            tokens, seconds = tokens + int(batch["attention_mask"].sum()), seconds + time.perf_counter() - t
    return tokens / seconds


def trainer(model_name: str, data, batch_size: int, steps: int, precision: str, device: str) -> dict:
    from symkd.students.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        config = TrainConfig(out=Path(tmp) / "s", base_model=model_name, max_steps=steps, batch_size=batch_size,
                             lr=1e-4, eval_fraction=0.1, eval_every=max(1, steps // 2), save_every=steps,
                             device=device, precision=precision, seed=0)  # fmt: skip
        return train(data, config, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2", help="student base model")
    ap.add_argument("--examples", type=int, default=600, help="training examples (dev.tsv triples or synthetic)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=16, help="trainer optimizer steps per precision")
    ap.add_argument("--bare-steps", type=int, default=8, help="timed bare steps per precision")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()

    import torch

    from symkd.students.card import PEAK_FLOPS
    from symkd.students.modeling import cpu_has_bf16, pick_device

    device = pick_device(args.device)[0]
    n = 8192 if device.type == "cuda" else 2048
    peak = {"fp32": gemm_peak(torch.float32, device, n), "bf16": gemm_peak(torch.bfloat16, device, n)}
    data = examples(args.examples)
    result: dict = {"device": device.type, "torch_threads": torch.get_num_threads(), "cpu_bf16": cpu_has_bf16(),
                    "peak_gflops_fp32": round(peak["fp32"] / 1e9, 1), "peak_gflops_bf16": round(peak["bf16"] / 1e9, 1)}  # fmt: skip
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        result["gpu"] = name
        result["table_peak_tflops_bf16"] = next((v / 1e12 for k, v in PEAK_FLOPS.items() if k in name), None)
    runs = {}
    for precision in ("fp32", "bf16"):
        summary = trainer(args.model, data, args.batch_size, args.steps, precision, args.device)
        runs[precision] = summary
        params = summary["parameters"]["total"]
        bare = bare_step(args.model, data, args.batch_size, args.bare_steps, precision == "bf16", device)
        speed = summary["throughput"]
        result.update({
            f"{precision}.bare_tokens_per_s": round(bare, 1),
            f"{precision}.bare_mfu": round(6 * params * bare / peak[precision], 4),
            f"{precision}.trainer_tokens_per_s": speed["tokens_per_s"],
            f"{precision}.trainer_mfu": round(6 * params * speed["tokens_per_s"] / peak[precision], 4),
            f"{precision}.trainer_wall_tokens_per_s": speed["wall_tokens_per_s"],
            f"{precision}.eval_loss": summary["final"]["eval_loss"],
            f"{precision}.eval_curve": [e["eval_loss"] for e in summary["evals"]],
        })  # fmt: skip
    result["parameters"] = runs["fp32"]["parameters"]["total"]
    result["train_examples"], result["eval_examples"] = runs["fp32"]["data"]["train_examples"], runs["fp32"]["data"]["eval_examples"]
    result["bf16_speedup_trainer"] = round(result["bf16.trainer_tokens_per_s"] / result["fp32.trainer_tokens_per_s"], 2)
    delta = result["bf16.eval_loss"] - result["fp32.eval_loss"]
    drop = runs["fp32"]["evals"][0]["eval_loss"] - result["fp32.eval_loss"] if runs["fp32"]["evals"] else 0.0
    result["eval_loss_delta"] = round(delta, 5)
    result["eval_loss_delta_rel"] = round(delta / result["fp32.eval_loss"], 5)
    result["hardware"] = runs["bf16"]["hardware"]["description"]
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    notes = (f"{result['train_examples']} ATOMIC2020 dev triples (held out {result['eval_examples']}), batch "
             f"{args.batch_size}, {args.steps} trainer steps and {args.bare_steps} timed bare steps per precision, seed 0. "
             "MFU = 6·N·tokens/s over the GEMM peak measured at start for that precision. Bare step: HF loss, "
             "backward, default AdamW. Trainer: fused AdamW, logits only at target positions, one sync per step; "
             "trainer tokens/s counts steps, `wall` adds held-out evaluation and checkpoints. Quality: held-out loss "
             f"bf16 - fp32 = {delta:+.4f} (the fp32 run's held-out loss fell {drop:.4f} between its two evaluations).")  # fmt: skip
    record("train_speed", result, title="Student training speed (bench/train_speed.py)", notes=notes, write=not args.no_write)


if __name__ == "__main__":
    main()
