"""Seed files: one event (``PersonX ...``) or one entity (``chain``) per line.

Blank lines and lines starting with ``#`` are skipped. ATOMIC2020 lines
(``head @@ relation<TAB>tails``) are accepted too: their head is taken. Lines that mention
PersonX are events (prompts for event generation show them); the others are entity heads
for the physical relations. Bad input ends in one line naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from symkd.graphs.triples import normalize
from symkd.pipelines.commonsense.relations import head_kind
from symkd.errors import UserError
from symkd.paths import data_dir

MAX_LINE = 200
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


def default_seed_file() -> Path:
    """The bundled ATOMIC2020 seed events (99 lines)."""
    return data_dir("prompts") / "commonsense" / "seed_events.txt"


@dataclass
class Seeds:
    path: str
    events: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)


def clean(text: str) -> str:
    """Straight quotes, single spaces, no trailing full stop."""
    text = " ".join(text.translate(_QUOTES).split())
    return text.rstrip(" .")


def read_seeds(path: str | Path | None = None) -> Seeds:
    """Read a seed file (the bundled one when ``path`` is None); dedupes, keeps file order."""
    path = Path(path) if path is not None else default_seed_file()
    if not path.exists():
        raise UserError(f"{path}: no such seed file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    seeds = Seeds(str(path))
    seen: set[str] = set()
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path}: line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        line = line.lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        if " @@ " in line:
            line = line.split(" @@ ", 1)[0]
        elif "\t" in line:
            raise UserError(f"{path}: line {number}: expected one event per line, found a tab")
        text = clean(line)
        if len(text) > MAX_LINE:
            raise UserError(f"{path}: line {number}: {len(text)} characters (a seed is at most {MAX_LINE})")
        if not text or normalize(text) in seen:
            continue
        seen.add(normalize(text))
        (seeds.events if head_kind(text) == "event" else seeds.entities).append(text)
    if not seeds.events and not seeds.entities:
        raise UserError(f"{path}: no seed events (the file is empty)")
    return seeds
