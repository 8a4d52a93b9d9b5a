"""Prompt-prefix reuse for the transformers backend: the shared prompt is prefilled once.

Few-shot prompts make most of a request's tokens the same across requests: every agent step
starts with the same CodeAct examples, every commonsense request of a relation with the same
demonstrations. Without reuse a batch of 16 such prompts prefills the shared part 16 times,
and on a CPU that prefill, not the decoding, is most of the time (measured in
``bench/agent_eval.py``). :class:`PrefixCache` computes the key/value cache of the longest
prefix all rows of a batch share once, on one row, keeps it for the next call (one entry, as
llama.cpp keeps its last prompt), and hands ``generate`` a pre-allocated cache for the batch
that starts with it. A request for ``n`` completions (maj@K, SAG, self-training's samples) is
``n`` rows with one prompt: its own part is prefilled once and its cache copied to the ``n``
rows, so ``generate`` only feeds each row its last prompt token.

Rows are laid out ``[shared prefix][padding][own suffix]`` with the padding masked out:
transformers derives position ids from the attention mask's running sum, so every row's
suffix continues at the prefix's length, exactly where it would be without padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, StaticCache

#: below this many shared tokens a separate prefill costs more than it saves
MIN_SHARED_TOKENS = 32


def shared_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence starts with."""
    first, n = sequences[0], min(len(s) for s in sequences)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return n


class PrefixCache:
    """The key/value cache of the last shared prompt prefix of one model."""

    def __init__(self, model: Any, device: torch.device, min_tokens: int = MIN_SHARED_TOKENS):
        self.model, self.device, self.min_tokens = model, device, min_tokens
        #: transformers 5 calls the argument ``cache``; 4.x ``past_key_values``
        self.keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.tokens: list[int] = []
        self.cache: DynamicCache | None = None
        #: prompt tokens run through the model for prefixes so far (what reuse did not save)
        self.prefilled = 0
        #: prompt tokens prefilled once for rows repeated ``copies`` times (``copies - 1`` times that saved)
        self.copied = 0

    def batch_inputs(self, prompts: list[list[int]], pad: int, max_new_tokens: int, copies: int = 1) -> dict[str, Any]:
        """``generate`` inputs for ``prompts``, each ``copies`` rows in a row, reusing the shared prefix.

        Returns ``input_ids``, ``attention_mask`` and a pre-allocated cache for every row
        holding the shared prefix when at least ``min_tokens`` are shared (under ``cache`` or
        ``past_key_values``), and with ``copies`` > 1 each prompt's own part too; the prompts'
        width, where generated tokens begin, is ``input_ids.shape[1]``.
        """
        shared = min(shared_length(prompts), min(len(p) for p in prompts) - 1)  # a row keeps one token to feed
        if shared < self.min_tokens:
            inputs, prefix, start = left_padded(prompts, pad), None, 0
        else:
            prefix, start = self._prefix_cache(prompts[0][:shared]), shared
            inputs = _middle_padded(prompts, pad, shared)
        width = inputs["input_ids"].shape[1]
        if copies > 1 and width - 1 > start:
            cache = self._copied_rows_cache(prefix, inputs, start, copies, width + max_new_tokens)
        else:
            cache = self._rows_cache(prefix, len(prompts) * copies, width + max_new_tokens)
        inputs = {k: v.repeat_interleave(copies, 0) for k, v in inputs.items()}
        inputs[self.keyword] = cache
        return inputs

    def _copied_rows_cache(self, prefix: DynamicCache | None, inputs: dict[str, Any], start: int, copies: int,
                           length: int) -> StaticCache:  # fmt: skip
        """A static cache holding every prompt but its last token, prefilled once per prompt
        (from ``start``, after the shared prefix) and copied to its ``copies`` rows."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        rows, end = ids.shape[0], ids.shape[1] - 1
        own = _starting_with(DynamicCache(), prefix, rows)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.inference_mode():
            self.model(input_ids=ids[:, start:end].to(self.device), attention_mask=mask[:, :end].to(self.device),
                       position_ids=positions[:, start:end].to(self.device), use_cache=True, **{self.keyword: own})  # fmt: skip
        self.copied += int(mask[:, start:end].sum())
        cache = StaticCache(config=self.model.config, max_cache_len=length)
        for i, layer in enumerate(own.layers):
            cache.update(layer.keys.repeat_interleave(copies, 0), layer.values.repeat_interleave(copies, 0), i)
        return cache

    def _rows_cache(self, prefix: DynamicCache | None, rows: int, length: int) -> StaticCache:
        """A static cache of ``length`` positions for ``rows`` rows, starting with ``prefix``.

        Pre-allocated because a growing cache concatenates every layer's keys and values at
        every step: measured on a batch of 16 agent prompts, ``torch.cat`` took 59 % of the
        decoding time with transformers' default dynamic cache.
        """
        return _starting_with(StaticCache(config=self.model.config, max_cache_len=length), prefix, rows)

    def _prefix_cache(self, prefix: list[int]) -> DynamicCache:
        """The cache of ``prefix``, extending (or cutting back) the kept one where it matches."""
        reuse = shared_length([self.tokens, prefix]) if self.cache is not None else 0
        if reuse < self.min_tokens or self.cache is None:
            self.cache, reuse = DynamicCache(), 0
        elif self.cache.get_seq_length() > reuse:
            self.cache.crop(reuse - self.cache.get_seq_length())  # negative: drop that many (4.x and 5.x)
        if reuse < len(prefix):
            rest = torch.tensor([prefix[reuse:]], device=self.device)
            positions = torch.arange(reuse, len(prefix), device=self.device)[None]
            try:
                with torch.inference_mode():
                    self.model(input_ids=rest, position_ids=positions, use_cache=True, **{self.keyword: self.cache})
            except BaseException:
                self.tokens, self.cache = [], None  # half-extended: keep nothing
                raise
            self.prefilled += len(prefix) - reuse
        self.tokens = prefix
        return self.cache


def _starting_with(cache: Any, prefix: DynamicCache | None, rows: int) -> Any:
    """``cache`` (empty) holding ``prefix`` (one row) in each of ``rows`` rows."""
    for i, layer in enumerate(prefix.layers if prefix is not None else ()):
        keys, values = layer.keys, layer.values
        cache.update(keys.expand(rows, *keys.shape[1:]), values.expand(rows, *values.shape[1:]), i)
    return cache


def left_padded(prompts: list[list[int]], pad: int) -> dict[str, Any]:
    """Rows padded on the left to one width, the padding masked out."""
    width = max(len(p) for p in prompts)
    ids = [[pad] * (width - len(p)) + p for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def _middle_padded(prompts: list[list[int]], pad: int, shared: int) -> dict[str, Any]:
    """Rows laid out [shared prefix][padding][own suffix], the padding masked out."""
    width = max(len(p) for p in prompts)
    ids = [p[:shared] + [pad] * (width - len(p)) + p[shared:] for p in prompts]
    mask = [[1] * shared + [0] * (width - len(p)) + [1] * (len(p) - shared) for p in prompts]
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
