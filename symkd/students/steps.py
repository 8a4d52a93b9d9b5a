"""The trainer's per-batch arithmetic: summed losses on the tail tokens, and the held-out loss.

Losses are *sums* (over target tokens for SFT and KD, over sequences for REDI), divided by the
count of the whole optimizer step (every micro-batch, every rank), not per-micro-batch means:
then a step's gradient is the mean over its global batch however it is split into
micro-batches, processes or packed rows (the averaging ``model(labels=...).loss`` does would
weigh a short micro-batch's tokens more). Logits are only computed at target positions
(``logits_to_keep`` with a boolean mask): the vocabulary projection is a fifth of a small
model's FLOPs and prompts are most of the tokens.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from symkd.students.batching import model_inputs
from symkd.students.distributed import Processes, shard


def keeps_logits(model: Any) -> bool:
    """Whether the (unwrapped, peft-unwrapped) model's forward takes ``logits_to_keep``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


#: model classes whose ``logits_to_keep`` refused a boolean mask (transformers before ~5.2x take
#: only an int or 1-D indices there: seen on 5.17, IndexError inside the forward)
_NO_MASK: set[type] = set()


def target_logits(model: Any, batch: dict[str, Any], keep: Any, sliced: bool) -> Any:
    """``[N, V]`` logits at the positions ``keep`` marks (those that predict a label)."""
    inputs = model_inputs(batch)
    logits = None
    if sliced and type(model) not in _NO_MASK:
        try:
            logits = model(**inputs, logits_to_keep=keep).logits
        except IndexError:
            _NO_MASK.add(type(model))  # all positions, then the mask: the same numbers, more FLOPs
    if logits is None:
        logits = model(**inputs).logits
    return logits if logits.dim() == 2 else logits[keep]


def loss_sums(model: Any, teacher: Any, kd: Any, batch: dict[str, Any], sliced: bool,
              redi_alpha: float | None = None) -> tuple[Any, Any, Any]:  # fmt: skip
    """(objective summed, KD summed likewise or None, logged sums) of one micro-batch.

    SFT: the objective is the CE summed over target tokens, logged ``[target count]``.
    ``redi_alpha``: the REDI objective summed over sequences (see :mod:`.losses.redi`), logged
    ``[positives' mean-NLL sum, negatives' mean-NLL sum]``.
    """
    import torch
    from torch.nn.functional import cross_entropy

    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][keep[:, :-1]]
    logits = target_logits(model, batch, keep, sliced)
    if redi_alpha is not None:
        from symkd.students.losses.redi import redi_terms

        token_nll = cross_entropy(logits.float(), targets, reduction="none")
        objective, logged = redi_terms(token_nll, batch["sequence"][keep], batch["negative"], redi_alpha)
        return objective, None, logged
    ce = cross_entropy(logits.float(), targets, reduction="sum")
    count = ce.new_tensor([targets.numel()])
    if kd is None:
        return ce, None, count
    with torch.no_grad():
        t_logits = target_logits(teacher, batch, keep, sliced)
    vocab = min(logits.shape[-1], t_logits.shape[-1])  # embeddings may be padded differently
    return ce, kd(logits[..., :vocab], t_logits[..., :vocab], targets) * targets.numel(), count


def eval_loss(model: Any, held: Sequence[Any], batch_size: int, procs: Processes, autocast: Any, sliced: bool,
              make_batch: Callable[[list[Any], bool], dict[str, Any]]) -> float:  # fmt: skip
    """Token-weighted cross-entropy on the held-out completion tokens, summed over all ranks.

    Rows go longest first (little padding); each rank scores its share of every global batch,
    so all ranks run the same number of forwards (FSDP and DDP need that). ``make_batch(items,
    masked)``: the trainer's tensors on its device, in its layout.
    """
    import torch

    order = sorted(range(len(held)), key=lambda i: -len(held[i].input_ids))
    span = batch_size * procs.world
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(order), span):
            rows, masked = shard(order[start : start + span], procs.rank, procs.world)
            batch = make_batch([held[i] for i in rows], masked)
            with autocast:
                ce, _, n = loss_sums(model, None, None, batch, sliced)
            total += torch.tensor([float(ce), float(n[0])], dtype=torch.float64)
    model.train()
    loss, count = procs.sum(total)
    return loss / max(count, 1.0)
