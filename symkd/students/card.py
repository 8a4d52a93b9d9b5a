"""What a trained student folder says about itself: ``training.json``, a README card, a curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from symkd.jsonio import atomic_write

CARD = """---
library_name: transformers
tags: [symkd, knowledge-distillation, commonsense]
base_model: {base}
---
# {name}

A student trained by [symkd](https://github.com/symkd/symkd) (`symkd train`).

- Base model: `{base}` ({method}; {trainable:,} of {total:,} parameters trained)
- Data: {data}
- Examples: {train_examples:,} for training, {eval_examples:,} held out (split by head); {too_long} longer than {max_length} tokens left out
- Steps: {steps:,} optimizer steps of {batch} examples ({epochs:.2f} epochs); learning rate {lr}
- Loss: {loss_line}
- Hardware: {hardware}; {tokens_per_s:,.0f} training tokens/s{mfu}

## Input format
Prompt `{{head}} {{relation phrase}} [GEN]`, completion ` {{tail}}` and EOS, e.g.

    {example_prompt}{example_completion}

Generate greedily from the prompt; the text up to EOS is the tail. `symkd eval commonsense
--model {name_path}` scores it with the COMET-ATOMIC2020 metrics.

Full configuration, data filters and the loss history are in `training.json`; the curve is
`training_curve.png`.
"""


def write_card(out: Path, summary: dict[str, Any]) -> None:
    cfg, data = summary["config"], summary["data"]
    final = summary["final"]
    loss_line = f"train {final['train_loss']:.4f}" if final.get("train_loss") is not None else "train -"
    if final.get("eval_loss") is not None:
        loss_line += f", held-out {final['eval_loss']:.4f}"
    if cfg.get("kd_loss"):
        loss_line += f" (CE mixed with {cfg['kd_loss']} KD from `{cfg['teacher_model']}`, weight {cfg['kd_weight']})"
    src = data["source"]
    described = ", ".join(f"{k}={v}" for k, v in src.items() if v not in (None, [], ""))
    mfu = f", MFU {summary['throughput']['mfu']:.1%}" if summary["throughput"].get("mfu") else ""
    text = CARD.format(
        base=cfg["base_model"], name=out.name, name_path=out,
        method=f"LoRA r={cfg['lora_r']}, merged" if cfg["lora"] else "full fine-tuning",
        trainable=summary["parameters"]["trainable"], total=summary["parameters"]["total"],
        data=described, train_examples=data["train_examples"], eval_examples=data["eval_examples"],
        too_long=data["too_long"], max_length=cfg["max_length"], steps=summary["steps"],
        batch=cfg["batch_size"] * cfg["grad_accum"], epochs=summary["epochs"], lr=cfg["lr"],
        loss_line=loss_line, hardware=summary["hardware"]["description"],
        tokens_per_s=summary["throughput"]["tokens_per_s"], mfu=mfu,
        example_prompt=data.get("example_prompt", ""), example_completion=data.get("example_completion", ""),
    )  # fmt: skip
    with atomic_write(out / "README.md") as fh:
        fh.write(text)
    with atomic_write(out / "training.json") as fh:
        json.dump(summary, fh, indent=2)


def plot_curve(history: list[dict[str, Any]], evals: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Training loss per step (and held-out loss) as a PNG; None when nothing was logged."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", lw=1, alpha=0.8)
    if evals:
        ax.plot([e["step"] for e in evals], [e["eval_loss"] for e in evals], "o-", label="held-out loss", lw=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (tail tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path
