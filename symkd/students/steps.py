"""The trainer's per-batch arithmetic: summed losses on the tail tokens, and the held-out loss.

Losses are *sums* over target tokens, divided by the target count of the whole optimizer
step (every micro-batch, every rank), not per-micro-batch means: then a step's gradient is
the token mean over its global batch however it is split into micro-batches or processes
(the averaging ``model(labels=...).loss`` does would weigh a short micro-batch's tokens more).
Logits are only computed at target positions (``logits_to_keep`` with a boolean mask): the
vocabulary projection is a fifth of a small model's FLOPs and prompts are most of the tokens.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from symkd.students.batching import collate
from symkd.students.distributed import Processes, shard


def keeps_logits(model: Any) -> bool:
    """Whether the (unwrapped, peft-unwrapped) model's forward takes ``logits_to_keep``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def target_logits(model: Any, batch: dict[str, Any], keep: Any, sliced: bool) -> Any:
    """``[N, V]`` logits at the positions ``keep`` marks (those that predict a label)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    logits = model(**inputs, logits_to_keep=keep).logits if sliced else model(**inputs).logits
    return logits if logits.dim() == 2 else logits[keep]


def loss_sums(model: Any, teacher: Any, kd: Any, batch: dict[str, Any], sliced: bool) -> tuple[Any, Any, int]:
    """(CE summed over target tokens, KD summed likewise or None, target count) of one micro-batch."""
    import torch

    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][keep[:, :-1]]
    logits = target_logits(model, batch, keep, sliced)
    ce = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    if kd is None:
        return ce, None, targets.numel()
    with torch.no_grad():
        t_logits = target_logits(teacher, batch, keep, sliced)
    vocab = min(logits.shape[-1], t_logits.shape[-1])  # embeddings may be padded differently
    return ce, kd(logits[..., :vocab], t_logits[..., :vocab], targets) * targets.numel(), targets.numel()


def eval_loss(model: Any, held: Sequence[Any], batch_size: int, procs: Processes, pad_id: int,
              autocast: Any, sliced: bool, multiple_of: int) -> float:  # fmt: skip
    """Token-weighted cross-entropy on the held-out completion tokens, summed over all ranks.

    Rows go longest first (little padding); each rank scores its share of every global batch,
    so all ranks run the same number of forwards (FSDP and DDP need that).
    """
    import torch

    order = sorted(range(len(held)), key=lambda i: -len(held[i].input_ids))
    span = batch_size * procs.world
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(order), span):
            rows, masked = shard(order[start : start + span], procs.rank, procs.world)
            batch = collate([held[i] for i in rows], pad_id, multiple_of=multiple_of, masked=masked)
            batch = {k: v.to(procs.device) for k, v in batch.items()}
            with autocast:
                ce, _, n = loss_sums(model, None, None, batch, sliced)
            total += torch.tensor([float(ce), n], dtype=torch.float64)
    model.train()
    loss, count = procs.sum(total)
    return loss / max(count, 1.0)
