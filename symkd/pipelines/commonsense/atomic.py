"""ATOMIC2020 TSV files (``head @@ relation<TAB>ref1| ref2| ...``): reading, the by-head dev split,
and the graph export ``--format tsv`` (registered in the ``symkd.exports`` entry-point group).

The students are evaluated on ``dev.tsv``; critics may only use a separate part of it, split
by head so no head is seen on both sides. The split is a stable hash of the normalised head
(see :data:`SPLIT_RULE`), the same on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from symkd.errors import UserError
from symkd.graphs.build import TripleSource, progress_bar
from symkd.graphs.export import Format, Options, flat
from symkd.graphs.triples import event_id, normalize
from symkd.jsonio import atomic_write
from symkd.pipelines.commonsense.relations import RELATIONS, get_relation

SPLIT_SALT = "symkd-dev-split-v1"
SPLIT_RULE = (
    f"bucket(head) = int(sha1('{SPLIT_SALT}:' + normalize(head)).hexdigest()[:8], 16) % 100; "
    "critic part: bucket < 50, evaluation part: bucket >= 50 "
    "(normalize = lower-case, collapse spaces, strip surrounding punctuation)"
)
CRITIC_PERCENT = 50


@dataclass(frozen=True)
class AtomicLine:
    """One line of an ATOMIC TSV file: a head, a relation and its reference tails."""

    lineno: int
    head: str
    relation: str
    tails: tuple[str, ...] = field(default_factory=tuple)


def read_atomic_tsv(path: str | Path) -> list[AtomicLine]:
    """Parse an ATOMIC TSV file; one UserError naming file:line for the first bad line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected an ATOMIC .tsv file")
    out: list[AtomicLine] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            out.append(_parse_line(path, lineno, line))
    if not out:
        raise UserError(f"{path}: empty file (expected lines 'head @@ relation<TAB>tail1| tail2')")
    return out


def _parse_line(path: Path, lineno: int, line: str) -> AtomicLine:
    where = f"{path}:{lineno}"
    if "\t" not in line:
        raise UserError(f"{where}: missing TAB between 'head @@ relation' and the tails")
    left, _, right = line.partition("\t")
    if "@@" not in left:
        raise UserError(f"{where}: missing '@@' between head and relation")
    head, _, relation = (s.strip() for s in left.rpartition("@@"))
    if not head:
        raise UserError(f"{where}: empty head")
    try:
        get_relation(relation)
    except UserError as exc:
        raise UserError(f"{where}: relation: {exc}") from None
    tails = tuple(t.strip() for t in right.split("|") if t.strip())
    if not tails:
        raise UserError(f"{where}: no tails after the TAB")
    return AtomicLine(lineno, head, relation, tails)


def head_bucket(head: str) -> int:
    """The head's bucket 0..99 (stable across runs, machines and Python versions)."""
    digest = hashlib.sha1(f"{SPLIT_SALT}:{normalize(head)}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100


def is_critic_head(head: str) -> bool:
    """True when the head belongs to the critic part of the dev split."""
    return head_bucket(head) < CRITIC_PERCENT


def dev_split(path: str | Path | Sequence[AtomicLine]) -> tuple[list[AtomicLine], list[AtomicLine]]:
    """(critic lines, evaluation lines) of an ATOMIC TSV, split by head with :data:`SPLIT_RULE`."""
    lines = read_atomic_tsv(path) if isinstance(path, (str, Path)) else list(path)
    critic = [ln for ln in lines if is_critic_head(ln.head)]
    evaluation = [ln for ln in lines if not is_critic_head(ln.head)]
    return critic, evaluation


def describe_lines(lines: Sequence[AtomicLine]) -> dict[str, Any]:
    """Counts and line numbers of a part of a file (what a card records)."""
    return {
        "lines": len(lines),
        "heads": len({normalize(ln.head) for ln in lines}),
        "references": sum(len(ln.tails) for ln in lines),
        "line_numbers": compact_ranges(ln.lineno for ln in lines),
    }


def compact_ranges(numbers: Any) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3,7,9-10"``."""
    nums = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)


def default_dev_path() -> Path | None:
    """The shared ATOMIC2020 dev.tsv: ``$SYMKD_ATOMIC_DEV``, else ``shared/data`` beside the checkout or cwd."""
    env = os.environ.get("SYMKD_ATOMIC_DEV")
    if env:
        return Path(env)
    rel = Path("shared") / "data" / "atomic2020" / "dev.tsv"
    root = Path(__file__).resolve().parents[2]
    for base in (root.parent, root, Path.cwd(), Path.cwd().parent):
        if (base / rel).is_file():
            return base / rel
    return None


def export_tsv(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """ATOMIC2020 TSV, ``head @@ relation<TAB>tail1| tail2``, one line per (head, relation).

    "none" tails are always written (ATOMIC marks inapplicable relations that way). A "|" inside
    a tail becomes "/" so the tail list stays parseable; rows with a relation outside ATOMIC2020
    or no head are skipped (and counted).
    """
    lines = triples = skipped = 0
    current: tuple[str, str] | None = None
    head_text, tails, seen = "", [], set()

    def flush(fh) -> None:
        nonlocal lines
        if current is not None and tails and head_text:
            fh.write(f"{head_text} @@ {current[1]}\t{'| '.join(tails)}\n")
            lines += 1

    total = src.count() if opts.progress else None
    rows = src.rows(order="x.head_id, x.head, x.relation, x.tail")
    with atomic_write(out) as fh:
        for row in progress_bar(rows, opts.progress, "tsv", total):
            if row["relation"] not in RELATIONS or not row["head"]:
                skipped += 1
                continue
            key = (row["head_id"] or event_id(row["head"]), row["relation"])
            if key != current:
                flush(fh)
                current, head_text, tails, seen = key, flat(row["head"]), [], set()
            tail = flat(row["tail"] or "").replace("|", "/")
            norm = normalize(tail)
            if tail and norm not in seen:
                seen.add(norm)
                tails.append(tail)
                triples += 1
        flush(fh)
    return {"lines": lines, "triples": triples, "skipped": skipped}


#: ``symkd export --format tsv`` (entry point ``symkd.exports: tsv``)
TSV_FORMAT = Format("tsv", export_tsv, "ATOMIC2020 TSV: head @@ relation<TAB>tail1| tail2")
