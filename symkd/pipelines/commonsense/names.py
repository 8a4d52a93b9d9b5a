"""PersonX/PersonY/PersonZ <-> first names, and the seeded randomness the pipeline uses.

As in West et al. (2022), prompts show people by first name ("Riley goes jogging") rather than
"PersonX"; the teacher's output is mapped back ("to put on Riley's shoes" -> "to put on
PersonX's shoes"). Every random choice is drawn from :func:`rng_for`, a ``random.Random``
seeded from the run seed and a description of the choice, so a run is reproducible and one
choice never shifts another.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Iterable, Mapping, Sequence

PLACEHOLDERS = ("PersonX", "PersonY", "PersonZ")

#: first names that are not also common English words (no "Will", "Rose", "Jack", "May")
NAMES = (
    "Alex", "Riley", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Avery", "Quinn", "Cameron",
    "Emma", "Liam", "Olivia", "Noah", "Sophia", "Mason", "Isabella", "Ethan", "Mia", "Lucas",
    "Amelia", "Logan", "Elijah", "Ella", "James", "Chloe", "Benjamin", "Zoe", "Henry", "Daniel",
    "Hannah", "Samuel", "David", "Sarah", "Michael", "Emily", "Jacob", "Anna", "Ryan", "Laura",
    "Kevin", "Rachel", "Brian", "Nicole", "Eric", "Megan", "Jason", "Julia", "Adam", "Maria",
    "Thomas", "Sofia", "Omar", "Priya", "Carlos", "Aisha", "Mateo", "Fatima", "Diego", "Leila",
    "Ivan", "Nina", "Oscar", "Elena", "Tyler", "Kayla", "Aaron", "Naomi", "Victor", "Paula",
    "Simon", "Clara", "Felix", "Sanjay", "Keisha", "Tomas", "Ingrid", "Kenji", "Amara", "Lukas",
)  # fmt: skip

#: heads and few-shot examples draw from disjoint halves, so an example's name never collides
#: with the head's, and a relation's examples read the same for every head (shared prefixes)
HEAD_NAMES = NAMES[1::2]
SHOT_NAMES = NAMES[::2]
_ANY_NAME = re.compile(r"\b(?:" + "|".join(NAMES) + r")\b")
_PLACEHOLDER = re.compile(r"\bPerson([XYZ])\b", re.IGNORECASE)


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from the run seed and a description (stable across processes)."""
    text = "|".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") >> 1


def rng_for(seed: int, *parts: object) -> random.Random:
    return random.Random(derive_seed(seed, *parts))


def sample_names(rng: random.Random, k: int = 3, pool: Sequence[str] = HEAD_NAMES) -> dict[str, str]:
    """``{"PersonX": name, "PersonY": name, ...}`` with ``k`` distinct names from ``pool``."""
    return dict(zip(PLACEHOLDERS[:k], rng.sample(list(pool), k)))


def to_names(text: str, names: Mapping[str, str]) -> str:
    """Replace PersonX/PersonY/PersonZ (any case) by the names in ``names``."""
    return _PLACEHOLDER.sub(lambda m: names.get(f"Person{m.group(1).upper()}", m.group(0)), text)


def to_placeholders(text: str, names: Mapping[str, str]) -> str:
    """Map names back to PersonX/PersonY/PersonZ (whole words, possessives included)."""
    for placeholder, name in names.items():
        text = re.sub(rf"\b{re.escape(name)}\b", placeholder, text)
    return text


def people(text: str) -> set[str]:
    """The placeholders an event mentions, e.g. ``{"PersonX", "PersonY"}``."""
    return {f"Person{m.upper()}" for m in _PLACEHOLDER.findall(text)}


def stray_names(text: str) -> list[str]:
    """First names from :data:`NAMES` left in a text after mapping back (copied from examples)."""
    return _ANY_NAME.findall(text)


def name_examples(examples: Iterable[Mapping[str, object]], rng: random.Random) -> list[dict]:
    """Few-shot examples, each with its own names (from :data:`SHOT_NAMES`) and ``x`` = PersonX's name."""
    out = []
    for example in examples:
        names = sample_names(rng, 3, SHOT_NAMES)
        shot = {k: to_names(v, names) if isinstance(v, str) else v for k, v in example.items()}
        out.append({**shot, "x": names["PersonX"]})
    return out
