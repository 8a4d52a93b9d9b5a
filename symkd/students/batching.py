"""Length-grouped batches (little padding, still shuffled) and padding into tensors.

Each epoch's order is a pure function of (seed, epoch), so a resumed run replays the same
batches and skips the ones it had already trained on.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from symkd.students.data import IGNORE_INDEX, Tokenized

#: how many batches' worth of examples are sorted by length together
MEGA_BATCH = 50


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches for one epoch: shuffle, sort each mega-batch by length, shuffle the batches.

    The longest batch goes first, so an out-of-memory error shows at step one, not hours in.
    """
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * MEGA_BATCH
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(longest))
    return batches


def collate(items: Sequence[Tokenized], pad_id: int, *, multiple_of: int = 1, masked: bool = False) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (pad labels ignored).

    The width is the batch's longest row, rounded up to ``multiple_of`` (8 suits GPU tensor
    cores; on a CPU every pad column is paid for, so 1). ``masked``: every label ignored, for a
    rank whose share of a global batch is empty (see :mod:`.distributed`).
    """
    import torch

    width = max(len(t.input_ids) for t in items)
    width = -(-width // multiple_of) * multiple_of
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        ids[row, :n] = torch.tensor(item.input_ids)
        if not masked:
            labels[row, :n] = torch.tensor(item.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def target_count(item: Tokenized) -> int:
    """Tokens the loss covers: labelled positions after the causal shift."""
    return sum(1 for label in item.labels[1:] if label != IGNORE_INDEX)
