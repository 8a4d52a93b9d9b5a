"""From examples to what the loop trains on: the held-out split, token ids, the length limit,
what is left out (and refusing when that is too much), and the step budget.

Nothing is left out silently. ``max_length`` defaults to the longest example (capped at
:data:`AUTO_MAX_LENGTH` and the model's context); examples longer than the limit are counted,
reported on stderr and in ``training.json``, and training is refused (one line) when they are
more than ``max_dropped_share`` of the data. With ``loss="sft"`` negatives are left out (and
counted); held-out loss is always measured on positives.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from symkd.errors import UserError
from symkd.students.batching import epoch_batches
from symkd.students.data import Example, Tokenized, TrainingData, split_held_out, tokenize

#: the automatic max_length's cap (tokens); pass --max-length to go beyond it
AUTO_MAX_LENGTH = 2048


@dataclass
class Prepared:
    train: list[Tokenized]
    held: list[Tokenized]
    first: Example | None  # a training example, shown on the card
    max_length: int
    too_long: int
    longest: int
    negatives: int  # negatives trained on (REDI)
    negatives_left_out: int  # negatives SFT ignores

    @property
    def lengths(self) -> list[int]:
        return [len(t.input_ids) for t in self.train]


def prepare(data: TrainingData, tokenizer: Any, config: Any, context: int | None,
            say: Callable[[str], None] | None = None) -> Prepared:  # fmt: skip
    """Split, tokenize and filter ``data`` for ``config``; ``context``: the model's position limit."""
    train_ex, held_ex = split_held_out(data, config.eval_fraction, config.seed)
    ignored = 0
    if config.loss == "sft":
        ignored = sum(e.negative for e in train_ex) + sum(e.negative for e in held_ex)
        train_ex = [e for e in train_ex if not e.negative]
    held_ex = [e for e in held_ex if not e.negative]
    train_all = [t for t in (tokenize(e, tokenizer) for e in train_ex) if t is not None]
    held_all = [t for t in (tokenize(e, tokenizer) for e in held_ex) if t is not None]
    longest = max((len(t.input_ids) for t in train_all + held_all), default=0)
    limit = config.max_length or min(longest, AUTO_MAX_LENGTH, context or AUTO_MAX_LENGTH)
    train_tok = [t for t in train_all if len(t.input_ids) <= limit]
    held_tok = [t for t in held_all if len(t.input_ids) <= limit]
    too_long = len(train_all) + len(held_all) - len(train_tok) - len(held_tok)
    _check_dropped(too_long, len(train_all) + len(held_all), limit, longest, config.max_dropped_share, say)
    if not train_tok:
        raise UserError(f"no training example fits in --max-length {limit} tokens" if train_all else
                        "no training example has a token to learn (negatives only? they need --loss redi)")  # fmt: skip
    if say is not None and ignored:
        say(f"{ignored} negative example(s) left out: --loss sft learns from positives only (--loss redi uses them)")
    negatives = sum(t.negative for t in train_tok)
    if config.loss == "redi" and not negatives and say is not None:
        say("--loss redi: no negative examples; REDI on positives alone is length-normalised SFT")
    return Prepared(train_tok, held_tok, train_ex[0] if train_ex else None, limit, too_long, longest, negatives, ignored)


def _check_dropped(too_long: int, total: int, limit: int, longest: int, allowed: float,
                   say: Callable[[str], None] | None) -> None:  # fmt: skip
    if not too_long:
        return
    share = too_long / max(total, 1)
    line = f"{too_long} of {total} examples ({share:.1%}) are longer than --max-length {limit} tokens (longest {longest})"
    if share > allowed:
        raise UserError(f"{line}: raise --max-length, or pass --max-dropped-share {math.ceil(share * 100) / 100:g} to leave them out")
    if say is not None:
        say(line + "; left out")


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def step_count(config: Any, prepared: Prepared, global_micro: int, per_epoch: int) -> int:
    """Optimizer steps of the run: ``max_steps``, else enough to see ``train_tokens`` tokens
    (walking the run's own batch stream, so the count is exact), else ``epochs`` passes."""
    if config.max_steps:
        return config.max_steps
    if config.train_tokens is None:
        return max(1, math.ceil(config.epochs * per_epoch / config.grad_accum))
    lengths = prepared.lengths
    full = (config.train_tokens - 1) // sum(lengths)  # whole epochs before the budget is reached (each sees every example)
    seen, micro = full * sum(lengths), full * per_epoch
    while seen < config.train_tokens:
        epoch, index = divmod(micro, per_epoch)
        if index == 0:
            batches = epoch_batches(lengths, global_micro, config.seed, epoch)
        seen += sum(lengths[i] for i in batches[index])
        micro += 1
    return max(1, math.ceil(micro / config.grad_accum))


def step_divisor(loss: str, targets: Sequence[int], indices: Sequence[int]) -> int:
    """What a step's summed loss is divided by: its target tokens (SFT), its sequences (REDI);
    ``targets[i]``: example i's target tokens."""
    if loss == "redi":
        return sum(1 for i in indices if targets[i] > 0)
    return sum(targets[i] for i in indices)
