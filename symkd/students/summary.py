"""What a training run measured, for ``training.json``: throughput and MFU, the hardware, the
loss curve PNG, and the summary :func:`symkd.students.card.write_card` turns into the card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from symkd.jsonio import atomic_write
from symkd.students.card import base_record

#: dense bf16 peak FLOP/s per GPU, by name fragment (MFU on a GPU; bench/train_speed.py measures instead)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def mfu(parameters: int, tokens_per_s: float, peak_flops: float | None, processes: int = 1) -> float | None:
    """Model FLOPs utilisation: ``6·N·tokens/s / (peak·processes)``.

    ``6·N`` per token is forward (2N) + backward (4N), N = parameters (tied embeddings once),
    over every token of the batch (prompt included); attention's ``12·L·T·d`` is left out (<2 %
    at T <= 128 for a 135M model), as is the vocabulary projection the trainer skips on prompt
    positions, so MFU counts useful work rather than work done.
    """
    if not peak_flops:
        return None
    return 6 * parameters * tokens_per_s / (peak_flops * processes)


def plot_curve(history: list[dict[str, Any]], evals: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Training loss per step (and held-out loss) as a PNG, with a second panel of tokens/s (and
    resident memory on a CPU) over the steps where the history times them; None when nothing was logged."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [h for h in history if h.get("seconds")]
    fig, axes = plt.subplots(2 if timed else 1, 1, figsize=(7, 6 if timed else 4), dpi=110, sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", lw=1, alpha=0.8)
    for key, label in (("pos_nll", "positives' NLL (REDI)"), ("neg_nll", "negatives' NLL (REDI)")):
        logged = [h for h in history if h.get(key) is not None]
        if logged:
            ax.plot([h["step"] for h in logged], [h[key] for h in logged], label=label, lw=1, alpha=0.8)
    if evals:
        ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="held-out loss", lw=1.5)
    ax.set_ylabel("loss (tail tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    if timed:
        _plot_speed(axes[1][0], timed)
    axes[-1][0].set_xlabel("optimizer step")
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path


def _plot_speed(ax: Any, timed: list[dict[str, Any]], window: int = 10) -> None:
    """Tokens/s over the last ``window`` steps (a long run slowing down shows here) and, where the
    rows carry it, the resident memory on a second axis."""
    steps = [h["step"] for h in timed]
    speed = []
    for i in range(len(timed)):
        part = timed[max(0, i - window + 1) : i + 1]
        speed.append(sum(h.get("tokens", 0) for h in part) / sum(h["seconds"] for h in part))
    ax.plot(steps, speed, lw=1, color="tab:green", label=f"tokens/s ({window}-step mean)")
    ax.set_ylabel("tokens/s")
    ax.grid(alpha=0.3)
    if any("rss_mb" in h for h in timed):
        mem = ax.twinx()
        rows = [h for h in timed if "rss_mb" in h]
        mem.plot([h["step"] for h in rows], [h["rss_mb"] / 1024 for h in rows], lw=1, color="tab:gray", label="resident GB")
        mem.set_ylabel("resident GB")
        trims = [h["step"] for h in rows if h.get("trimmed")]
        if trims:
            mem.plot(trims, [h["rss_mb"] / 1024 for h in rows if h.get("trimmed")], "x", color="tab:red", ms=3, label="heap trimmed")
        mem.legend(loc="lower right", fontsize=8)
    ax.legend(loc="lower left", fontsize=8)


def hardware(device: Any, bf16: bool, processes: int = 1) -> dict[str, Any]:
    import os
    import platform

    import torch

    many = f" x {processes} processes" if processes > 1 else ""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return {"device": "cuda", "name": name, "bf16": bf16, "processes": processes,
                "description": (f"{name} (bf16 autocast)" if bf16 else name) + many}  # fmt: skip
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    return {"device": "cpu", "name": _cpu_name() or platform.processor() or platform.machine(), "threads": threads,
            "bf16": bf16, "processes": processes,
            "description": f"CPU, {cores} cores, {threads} torch threads, {'bf16 autocast' if bf16 else 'float32'}{many}"}  # fmt: skip


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def build_summary(config: Any, data: Any, state: dict[str, Any], total_steps: int, per_epoch: int, prepared: Any,
                  trainable: int, total: int, device: Any, bf16: bool, processes: int) -> dict[str, Any]:  # fmt: skip
    """What ``training.json`` holds; ``per_epoch`` counts global micro-batches; ``prepared``: the
    tokenized split (:class:`symkd.students.prepare.Prepared`)."""
    from symkd._version import __version__

    hw = hardware(device, bf16, processes)
    tokens_per_s = state["tokens"] / max(state["seconds"], 1e-9)
    wall = state["seconds"] + state.get("overhead_seconds", 0.0)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in hw["name"]), None) if device.type == "cuda" else None
    util = mfu(total, tokens_per_s, peak, processes)
    last = state["history"][-10:]
    final_train = sum(h["loss"] for h in last) / max(1, len(last))
    example = prepared.first
    return {
        "symkd_version": __version__,
        "fingerprint": state["fingerprint"],
        "base": base_record(config.base_model, Path(config.out)),
        "config": {**config.model_dump(mode="json"), "lr": config.learning_rate},
        "data": {"source": data.source, "examples": len(data.examples), "train_examples": len(prepared.train),
                 "eval_examples": len(prepared.held), "too_long": prepared.too_long, "max_length": prepared.max_length,
                 "longest": prepared.longest, "negatives": prepared.negatives, "negatives_left_out": prepared.negatives_left_out,
                 "tokens_per_epoch": sum(prepared.lengths),
                 "example_prompt": example.prompt if example else "", "example_completion": example.completion if example else ""},
        "steps": state["step"],
        "epochs": state["step"] * config.grad_accum / per_epoch,
        "total_steps": total_steps,
        "global_batch": config.batch_size * config.grad_accum * processes,
        "parameters": {"trainable": trainable, "total": total},
        "final": {"train_loss": round(final_train, 5) if state["history"] else None,
                  "eval_loss": state["evals"][-1]["eval_loss"] if state["evals"] else None,
                  "kd_loss": round(sum(h["kd"] for h in last) / len(last), 5) if last and "kd" in last[-1] else None,
                  **({"redi": drift} if (drift := redi_drift(state["history"])) else {})},
        "throughput": {"tokens": state["tokens"], "seconds": round(state["seconds"], 2),
                       "tokens_per_s": round(tokens_per_s, 1), "mfu": round(util, 4) if util else None,
                       "wall_seconds": round(wall, 2), "wall_tokens_per_s": round(state["tokens"] / max(wall, 1e-9), 1)},
        "hardware": hw,
        "history": state["history"],
        "evals": state["evals"],
    }  # fmt: skip


def redi_drift(history: list[dict[str, Any]], window: int = 10) -> dict[str, Any] | None:
    """A REDI run's two terms at its start and end (means over the first and last ``window`` steps
    that logged them); None for other losses. ``diverged``: the positives' mean NLL ended more than
    half above where it began, so the push-down on negatives is winning (bench/results notes,
    2026-12-08: from the base model at lr 1e-4 the positives went from 2.1 to 11.9, the negatives from 1.7 to 44)."""
    pos = [h["pos_nll"] for h in history if h.get("pos_nll") is not None]
    neg = [h["neg_nll"] for h in history if h.get("neg_nll") is not None]
    if not pos:
        return None

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 5) if values else None

    first, final = mean(pos[:window]), mean(pos[-window:])
    return {"pos_nll_first": first, "pos_nll_last": final, "neg_nll_first": mean(neg[:window]),
            "neg_nll_last": mean(neg[-window:]), "diverged": bool(final > 1.5 * first)}  # fmt: skip


def redi_warning(summary: dict[str, Any]) -> str | None:
    """The line a diverged REDI run prints at its end, else None."""
    drift = (summary.get("final") or {}).get("redi")
    if not drift or not drift["diverged"]:
        return None
    return (f"warning: REDI diverged: the positives' mean NLL rose from {drift['pos_nll_first']:.3g} to "
            f"{drift['pos_nll_last']:.3g} (negatives {drift['neg_nll_first']:.3g} -> {drift['neg_nll_last']:.3g}); "
            "train SFT first and run REDI from that student at a lower --lr (the paper: 1e-6 after SFT at 5e-5)")
