"""Lexical constraints (I2D2's NeuroLogic decoding, lite): required and forbidden words.

* :func:`satisfies` is the post-filter every backend's output goes through (the only
  constraint API backends get). Words and phrases match case-insensitively as whole words:
  ``"ice cream"`` matches "some Ice  cream." but not "iced cream"; ``"dog"`` does not match "dogs".
* :func:`hf_bad_words_ids` and :func:`require_words_processor` constrain the search of the
  transformers backend itself: forbidden words are banned token sequences, and a required
  phrase that has not appeared yet is forced in while there is still room for it (the end of
  the text and the stop strings are held back until every required phrase is in).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

from symkd.errors import UserError


def check_words(words: Sequence[str], option: str) -> tuple[str, ...]:
    """Strip and validate words/phrases; an empty one is a clear error."""
    out = []
    for word in words:
        word = " ".join(str(word).split())
        if not word:
            raise UserError(f"{option}: empty word or phrase")
        out.append(word)
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=256)
def _pattern(phrase: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def contains(text: str, phrase: str) -> bool:
    return _pattern(phrase).search(text) is not None


def satisfies(text: str, require: Sequence[str] = (), forbid: Sequence[str] = ()) -> bool:
    """True when ``text`` contains every required word/phrase and no forbidden one."""
    return all(contains(text, p) for p in require) and not any(contains(text, p) for p in forbid)


def violations(text: str, require: Sequence[str] = (), forbid: Sequence[str] = ()) -> list[str]:
    """What breaks the constraints: ``missing:WORD`` / ``forbidden:WORD`` items."""
    return [f"missing:{p}" for p in require if not contains(text, p)] + [
        f"forbidden:{p}" for p in forbid if contains(text, p)
    ]


# ---- transformers backend --------------------------------------------------------------------


def _variants(phrase: str) -> list[str]:
    forms = {phrase, phrase.lower(), phrase[:1].upper() + phrase[1:]}
    return sorted({f for form in forms for f in (form, " " + form)})


def hf_bad_words_ids(tokenizer: Any, forbid: Sequence[str]) -> list[list[int]] | None:
    """Token sequences to ban (each phrase with and without a leading space, three casings)."""
    seqs = []
    for phrase in forbid:
        for form in _variants(phrase):
            ids = tokenizer(form, add_special_tokens=False)["input_ids"]
            if ids and ids not in seqs:
                seqs.append(ids)
    return seqs or None


def hf_processors(tokenizer: Any, params: Any, eos_ids: Sequence[int]) -> list[Any]:
    """Logits processors for ``params.require_words`` (empty when nothing is required)."""
    if not params.require_words:
        return []
    return [require_words_processor(tokenizer, params.require_words, params.max_tokens, eos_ids, params.stop)]


_STOP_IDS: dict[tuple[int, tuple[str, ...]], list[int]] = {}


def _stop_token_ids(tokenizer: Any, stops: Sequence[str]) -> list[int]:
    """Vocabulary entries whose text contains a stop string (held back while words are missing)."""
    key = (id(tokenizer), tuple(s for s in stops if s))
    if key not in _STOP_IDS:
        vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))] if key[1] else []
        _STOP_IDS[key] = [i for i, piece in enumerate(vocab) if any(s in piece for s in key[1])]
    return _STOP_IDS[key]


def require_words_processor(
    tokenizer: Any, require: Sequence[str], budget: int, eos_ids: Sequence[int], stops: Sequence[str]
) -> Any:
    """A ``LogitsProcessor`` forcing ``require`` in (built here so torch is imported only when used)."""
    import torch
    from transformers import LogitsProcessor

    class _Require(LogitsProcessor):
        def __init__(self) -> None:
            self.phrases = list(require)
            self.budget = budget
            self.blocked = sorted(set(eos_ids) | set(_stop_token_ids(tokenizer, stops)))
            self.start: int | None = None
            self.queues: dict[int, list[int]] = {}

        def _ids(self, phrase: str, text: str) -> list[int]:
            lead = "" if not text or text.endswith(" ") else " "
            return tokenizer(lead + phrase, add_special_tokens=False)["input_ids"]

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if self.start is None:
                self.start = input_ids.shape[1]
            used = input_ids.shape[1] - self.start
            for row in range(input_ids.shape[0]):
                queue = self.queues.get(row)
                if not queue:
                    text = tokenizer.decode(input_ids[row, self.start :], skip_special_tokens=True)
                    missing = [p for p in self.phrases if not contains(text, p)]
                    if not missing:
                        continue
                    scores[row, self.blocked] = float("-inf")
                    needed = [self._ids(p, text) for p in missing]
                    if self.budget - used > sum(len(ids) for ids in needed):
                        continue
                    queue = self.queues[row] = list(needed[0])
                forced = queue.pop(0)
                keep = scores[row, forced].clone()
                scores[row] = float("-inf")
                scores[row, forced] = keep if torch.isfinite(keep) else 0.0
            return scores

    return _Require()


def generation_config_updates(tokenizer: Any, params: Any) -> dict[str, Any]:
    """``GenerationConfig`` fields for ``params`` (the banned sequences of forbidden words)."""
    bad = hf_bad_words_ids(tokenizer, params.forbid_words)
    return {"bad_words_ids": bad} if bad else {}
