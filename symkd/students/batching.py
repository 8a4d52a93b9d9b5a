"""Length-grouped batches (little padding, still shuffled) and their tensors, padded or packed.

Each epoch's order is a pure function of (seed, epoch), so a resumed run replays the same
batches and skips the ones it had already trained on.

A micro-batch becomes tensors in one of two layouts, with the same examples and the same loss:

* padded (:func:`collate`): one example per row, right-padded, with an ``attention_mask``;
* packed (:func:`collate` with ``pack=C``): the examples are laid end to end into rows of at most
  ``C`` tokens (first-fit decreasing), ``position_ids`` restart at 0 for each example and there
  is no ``attention_mask``. transformers reads the restarts as sequence boundaries
  (``masking_utils.find_packed_sequence_indices``) and builds a block-diagonal causal mask (eager,
  sdpa; flash-attention takes the boundaries from the position ids), so no token attends across
  examples. Only the tail of a row's last fill is padding.

Both layouts carry ``sequence`` (which example of the micro-batch each token belongs to, -1 on
padding) and ``negative`` (per example), which per-sequence objectives (REDI) need.
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


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Positions into ``lengths`` grouped into rows of at most ``capacity`` tokens (first-fit
    decreasing; an item longer than ``capacity`` gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if row is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[row].append(i)
            room[row] -= lengths[i]
    return rows


def collate(items: Sequence[Tokenized], pad_id: int, *, multiple_of: int = 1, masked: bool = False,
            pack: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Tensors of a micro-batch: ``input_ids``, ``labels`` (pad labels ignored), ``sequence``,
    ``negative``, and ``attention_mask`` (padded) or ``position_ids`` (``pack``: row capacity).

    The width is the longest row, rounded up to ``multiple_of`` (8 suits GPU tensor cores; the
    trainer uses 64 on a CPU, where fewer distinct widths keep memory flatter at no measured cost). ``masked``: every label ignored, for a rank whose
    share of a global batch is empty (see :mod:`.distributed`).
    """
    import torch

    lengths = [len(t.input_ids) for t in items]
    rows = pack_rows(lengths, pack) if pack else [[i] for i in range(len(items))]
    width = max(sum(lengths[i] for i in row) for row in rows)
    width = -(-width // multiple_of) * multiple_of
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    sequence = torch.full((len(rows), width), -1, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            end = start + lengths[i]
            ids[r, start:end] = torch.tensor(items[i].input_ids)
            if not masked:  # an example's first token is predicted by nothing (nor by its row neighbour)
                labels[r, start + 1 : end] = torch.tensor(items[i].labels[1:])
            sequence[r, start:end] = i
            positions[r, start:end] = torch.arange(lengths[i])
            start = end
        positions[r, start:] = torch.arange(width - start)  # padding: a sequence of its own
    batch = {"input_ids": ids, "labels": labels, "sequence": sequence,
             "negative": torch.tensor([t.negative for t in items], dtype=torch.bool)}  # fmt: skip
    if pack:
        batch["position_ids"] = positions
    else:
        batch["attention_mask"] = (sequence >= 0).long()
    return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model's forward takes from a collated batch (no cache: training and scoring)."""
    keys = ("input_ids", "attention_mask", "position_ids")
    return {**{k: batch[k] for k in keys if k in batch}, "use_cache": False}


def target_count(item: Tokenized) -> int:
    """Tokens the loss covers: labelled positions after the causal shift."""
    return sum(1 for label in item.labels[1:] if label != IGNORE_INDEX)
