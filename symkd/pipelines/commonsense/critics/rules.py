"""Rule-based critic: cheap checks that catch malformed teacher output.

Checks (each can be skipped with ``skip``):

- ``format``: printable one-line text; no markup, URLs, code or chat tokens; has letters;
  is not only function words ("a", "the").
- ``length``: ``min_chars`` <= chars <= ``max_chars`` and ``min_words`` <= words <=
  ``max_words``; by default the word limit is per relation (see :data:`FORMS`).
- ``banned``: case-insensitive phrases matched on word boundaries (:data:`DEFAULT_BANNED`
  plus ``banned``), a name said twice ("PersonX PersonX"), template leftovers
  ("Situation:", "Event:"), list numbering ("1.", "- ").
- ``form``: the tail has the shape the relation asks for, by word-list heuristics on the
  first word (no tagger): xAttr an adjective phrase (no leading "to", no subject or
  auxiliary, short); xReact/oReact a feeling; xIntent/xWant/oWant/xNeed and the
  ObjectUse/CapableOf/Desires group a verb phrase ("to ..." or bare: no subject, article or
  copula first); isAfter/isBefore/HasSubEvent an event (two words or more, not "to ..." or
  "because ..."); AtLocation/MadeUpOf/isFilledBy a short noun phrase; the other relations
  (xEffect, oEffect, HinderedBy, Causes, xReason) only have a word limit.
- ``echo``: the tail repeats the head, or is contained in it (whole words).

"none" (the relation does not apply) passes every check. A hard failure (format, banned)
scores 0; each soft failure (length, form, echo) costs 0.25. Kept when score >= threshold
(default 1.0: every check passes). Options given as one CLI string (``banned``, ``skip``)
are separated by ``|``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from symkd.critics.base import Critic, Verdict
from symkd.errors import UserError
from symkd.graphs.triples import is_none

CHECKS = ("format", "length", "banned", "form", "echo")
HARD = {"format", "banned"}
SOFT_PENALTY = 0.25

DEFAULT_BANNED = (
    "i'm sorry", "i am sorry", "as an ai", "language model", "i cannot", "i can't help",
    "i'm not able", "i am not able", "sorry, but", "<|", "|>", "</s>", "<s>", "[inst]",
    "###", "assistant:", "user:", "system:", "situation:", "event:", "relation:", "head:",
    "tail:", "answer:", "output:", "input:", "question:", "response:", "example:", "{{", "}}",
)

SUBJECTS = {
    "i", "you", "he", "she", "it", "we", "they", "personx", "persony", "personz", "someone",
    "somebody", "everyone", "everybody", "nobody", "x", "y", "person", "there",
}
DETERMINERS = {
    "a", "an", "the", "this", "that", "these", "those", "my", "his", "her", "their", "its",
    "our", "your", "some", "every",
}
#: finite auxiliaries and copulas: a tail starting with one is a clause, not a phrase
#: (the bare forms "be", "have", "do", "feel" start a verb phrase, so they are not here)
AUXILIARIES = {
    "is", "are", "was", "were", "am", "been", "will", "would", "can", "could", "should",
    "shall", "may", "might", "must", "has", "had", "does", "did", "feels", "felt", "seems",
}
CONJUNCTIONS = {"because", "since", "so", "and", "but", "or", "if", "when", "while", "although"}
FUNCTION_WORDS = (SUBJECTS - {"person"}) | DETERMINERS | AUXILIARIES | CONJUNCTIONS | {
    "be", "to", "of", "in", "on", "at", "for", "with", "by", "from", "not", "no", "yes", "ok", "okay",
}


@dataclass(frozen=True)
class Form:
    """What a relation's tail looks like: a phrase kind and a word limit."""

    kind: str  # adjective | feeling | verb | event | clause | noun | any
    max_words: int


FORMS: dict[str, Form] = {
    "xAttr": Form("adjective", 5),
    "HasProperty": Form("adjective", 6),
    "xReact": Form("feeling", 8),
    "oReact": Form("feeling", 8),
    **{r: Form("verb", 16) for r in ("xIntent", "xWant", "oWant", "xNeed")},
    **{r: Form("verb", 16) for r in ("ObjectUse", "CapableOf", "Desires", "NotDesires")},
    **{r: Form("event", 24) for r in ("isAfter", "isBefore", "HasSubEvent")},
    **{r: Form("clause", 30) for r in ("HinderedBy", "Causes", "xReason")},
    **{r: Form("any", 20) for r in ("xEffect", "oEffect")},
    **{r: Form("noun", 6) for r in ("AtLocation", "MadeUpOf", "isFilledBy")},
}

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)\S+|\b[\w.-]+\.(?:com|org|net|io|edu|gov)\b")
_MARKUP = re.compile(r"</?[A-Za-z][^>]*>|\*\*|__|`|\[[^\]]*\]\([^)]*\)|^\s*#|\{[^}]*\}|\\[nt]")
_NUMBERING = re.compile(r"^\s*(?:\(?\d+[.):]|[-*\u2022]\s|[a-z]\)\s)")
_REPEATED_NAME = re.compile(r"(?i)\b(person[xyz]|person [xyz])\b[\s,.;:]+\1\b")
_LEFTOVER = re.compile(
    r"^\s*(?:(?i:situation|event|answer|output|tail|head|relation|example)\s*\d*\s*[:=\-]|Situation\b)"
)


#: relations whose tail may be "<someone> to <verb>" ("PersonY to leave", "the dog to sleep")
WANTS = {"xIntent", "xWant", "oWant", "xNeed"}
_SOMEONE = DETERMINERS | {"personx", "persony", "personz", "person"}


def _wants_someone_to(ws: list[str]) -> bool:
    return ws[0] in _SOMEONE and "to" in ws[1:4] and not AUXILIARIES & set(ws[: ws.index("to")])


def _split(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split("|") if p.strip()]
    return [str(p).strip() for p in value if str(p).strip()]


def _phrase_pattern(text: str) -> re.Pattern:
    """``text`` as a substring that does not start or end inside a word ("i cannot" not in "taxi cannot")."""
    left = r"(?<!\w)" if text[:1].isalnum() else ""
    right = r"(?!\w)" if text[-1:].isalnum() else ""
    return re.compile(left + re.escape(text) + right)


def words(text: str) -> list[str]:
    """Lower-cased words (letters, apostrophes, hyphens)."""
    return [w.lower() for w in _WORD.findall(text)]


class RulesCritic(Critic):
    """Format, length, banned strings, relation form and head echo (see the module doc)."""

    name = "rules"
    version = "1"
    item_table = "triples"
    batch_size = 2048

    def __init__(
        self,
        threshold: float = 1.0,
        min_chars: int = 2,
        max_chars: int = 160,
        min_words: int = 1,
        max_words: int | None = None,
        banned: str | Sequence[str] | None = None,
        default_banned: bool = True,
        skip: str | Sequence[str] | None = None,
    ):
        if not 0.0 <= threshold <= 1.0:
            raise UserError(f"critic 'rules': threshold {threshold} is not in 0..1")
        unknown = [c for c in _split(skip) if c not in CHECKS]
        if unknown:
            raise UserError(f"critic 'rules': unknown check {unknown[0]!r} in skip (known: {', '.join(CHECKS)})")
        self.threshold = float(threshold)
        self.min_chars, self.max_chars = int(min_chars), int(max_chars)
        self.min_words, self.max_words = int(min_words), max_words
        self.banned = [b.lower() for b in (*(DEFAULT_BANNED if default_banned else ()), *_split(banned))]
        self._banned = [_phrase_pattern(b) for b in self.banned]
        self.checks = [c for c in CHECKS if c not in set(_split(skip))]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "checks": self.checks,
            "min_chars": self.min_chars,
            "max_chars": self.max_chars,
            "min_words": self.min_words,
            "max_words": self.max_words,
            "banned": len(self.banned),
        }

    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        return [self.check(item.get("head") or "", item.get("relation") or "", item.get("tail") or "") for item in items]

    def check(self, head: str, relation: str, tail: str) -> Verdict:
        """The verdict on one triple."""
        if is_none(tail):
            return Verdict(1.0, True)
        failed: dict[str, str] = {}
        for check in self.checks:
            reason = getattr(self, f"_check_{check}")(head, relation, tail)
            if reason:
                failed[check] = reason
        if not failed:
            return Verdict(1.0, True)
        if HARD & failed.keys():
            score = 0.0
        else:
            score = max(0.0, 1.0 - SOFT_PENALTY * len(failed))
        return Verdict(score, score >= self.threshold, {"failed": list(failed), "why": failed})

    # -- checks: each returns None when it passes, else a short reason ---------------------
    def _check_format(self, head: str, relation: str, tail: str) -> str | None:
        if not tail.strip():
            return "empty"
        if "\n" in tail or "\r" in tail:
            return "newline"
        bad = [c for c in tail if unicodedata.category(c)[0] == "C"]
        if bad:
            return f"control character {bad[0]!r}"
        if _URL.search(tail):
            return "URL"
        if _MARKUP.search(tail):
            return "markup"
        if not any(c.isalpha() for c in tail):
            return "no letters"
        ws = words(tail)
        if ws and all(w in FUNCTION_WORDS for w in ws) and not any(w in {"personx", "persony"} for w in ws):
            return "only function words"
        if sum(c in string.punctuation for c in tail) > max(3, len(tail) // 4):
            return "mostly punctuation"
        return None

    def _check_length(self, head: str, relation: str, tail: str) -> str | None:
        n_chars, n_words = len(tail.strip()), len(tail.split())
        form = FORMS.get(relation)
        max_words = self.max_words if self.max_words is not None else (form.max_words if form else 20)
        if n_chars < self.min_chars:
            return f"{n_chars} chars < {self.min_chars}"
        if n_chars > self.max_chars:
            return f"{n_chars} chars > {self.max_chars}"
        if n_words < self.min_words:
            return f"{n_words} words < {self.min_words}"
        if n_words > max_words:
            return f"{n_words} words > {max_words}"
        return None

    def _check_banned(self, head: str, relation: str, tail: str) -> str | None:
        low = " ".join(tail.lower().split())
        for text, pattern in zip(self.banned, self._banned):
            if pattern.search(low):
                return f"contains {text!r}"
        match = _REPEATED_NAME.search(tail)
        if match:
            return f"repeats {match.group(1)!r}"
        if _LEFTOVER.search(tail):
            return "template leftover"
        if _NUMBERING.search(tail):
            return "list numbering"
        return None

    def _check_form(self, head: str, relation: str, tail: str) -> str | None:
        form = FORMS.get(relation)
        ws = words(tail)
        if form is None or not ws:
            return None
        if tail.rstrip().endswith("?"):
            return f"{relation}: a question"
        first = ws[0]
        if form.kind in {"adjective", "feeling"}:
            if first == "to":
                return f"{relation}: starts with 'to' (a verb phrase, not an adjective)"
            if first in SUBJECTS or first in AUXILIARIES or first in CONJUNCTIONS or first == "be":
                return f"{relation}: starts with {first!r} (a clause, not an adjective)"
        elif form.kind == "verb":
            if relation in WANTS and _wants_someone_to(ws):
                return None
            if first in SUBJECTS or first in AUXILIARIES or first in CONJUNCTIONS:
                return f"{relation}: starts with {first!r} (not a verb phrase)"
            if first in DETERMINERS and relation in WANTS:
                return f"{relation}: starts with {first!r} (a noun phrase, not a verb phrase)"
        elif form.kind == "event":
            if len(ws) < 2:
                return f"{relation}: one word is not an event"
            if first == "to" or first in CONJUNCTIONS:
                return f"{relation}: starts with {first!r} (not an event)"
        elif form.kind == "noun":
            if first == "to" or first in SUBJECTS - {"person"} or first in AUXILIARIES or first in CONJUNCTIONS:
                return f"{relation}: starts with {first!r} (not a noun phrase)"
        return None

    def _check_echo(self, head: str, relation: str, tail: str) -> str | None:
        t = " ".join(words(tail))
        if t.startswith("to "):
            t = t[3:]
        h = " ".join(words(head))
        if not t or not h:
            return None
        if t == h:
            return "repeats the head"
        if f" {t} " in f" {h} ":
            return "contained in the head"
        if len(h.split()) >= 3 and f" {h} " in f" {t} ":
            return "contains the whole head"
        return None
