"""``symkd strategies import FILE.md|json --db DB``: a person's edits back into the library.

Every strategy in the file must already be in the database (the ``###`` heading or ``id``
names it). A changed text, tag list or status becomes a new version (the original stays in
``strategy_versions``); an unchanged one is left alone. The whole file is read and checked
before anything is written, and the changes go in one transaction.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.safetext import shown, valid_unicode
from symkd.store.db import Store
from symkd.pipelines.strategies.export import JSON_FORMAT, MARKER, unescape
from symkd.pipelines.strategies.library import STATUSES, edit, get, library_opened

_HEADING = re.compile(r"^###\s+(\S+)\s*$")
_FIELD = re.compile(r"^-\s+(status|tags):\s?(.*)$")
EDITABLE_STATUSES = ("accepted", "rejected", "edited")
#: a library file larger than this is refused before it is read (a strategy is a few
#: sentences; 10,000 of them with their evidence take about 10 MB)
MAX_FILE_BYTES = 32 * 2**20
#: the longest text or tag an import may set (longer ones are refused, naming the strategy)
MAX_TEXT_CHARS = 20_000
MAX_TAG_CHARS = 200
MAX_TAGS = 100


def _lines(text: str) -> list[str]:
    """The file's lines, split at \\n only (the exporter escapes every other line break; a
    \\r before \\n is the editor's Windows line ending)."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _split_tags(value: str) -> list[str]:
    """Tags from a ``- tags:`` value: commas separate them, ``\\,`` is a comma inside one."""
    tags, current, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            current.append(value[i : i + 2])
            i += 2
            continue
        if value[i] == ",":
            tags.append("".join(current))
            current = []
        else:
            current.append(value[i])
        i += 1
    tags.append("".join(current))
    return [unescape(t.strip()) for t in tags if t.strip()]


def parse_markdown(path: Path, text: str) -> list[dict[str, Any]]:
    if MARKER not in text or not text.lstrip().startswith("# symkd strategy library"):
        raise UserError(f"{path}: not a symkd strategy library (no '{MARKER}' marker)")
    entries: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for lineno, line in enumerate(_lines(text), 1):
        heading = _HEADING.match(line)
        if heading:
            current = {"id": heading.group(1), "text": [], "line": lineno}
            entries.append(current)
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith(">"):
            current["text"].append(unescape(line[2:] if line.startswith("> ") else line[1:]))
        elif current is not None and (field := _FIELD.match(line)):
            value = field.group(2).strip()
            current[field.group(1)] = _split_tags(value) if field.group(1) == "tags" else value
    for entry in entries:
        entry["text"] = "\n".join(entry["text"])  # as written: compared with the stored text as is
        if not entry["text"].strip():
            raise UserError(f"{path}:{entry['line']}: strategy {entry['id']} has no quoted text ('> ...' lines)")
    return entries


def parse_json(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != JSON_FORMAT or not isinstance(data.get("strategies"), list):
        raise UserError(f"{path}: not a symkd strategy library (expected {{\"format\": \"{JSON_FORMAT}\", \"strategies\": [...]}})")
    out = []
    for n, row in enumerate(data["strategies"], 1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
            raise UserError(f"{path}: strategy {n}: needs string fields 'id' and 'text'")
        out.append({"id": row["id"], "text": row["text"], "status": row.get("status"), "tags": row.get("tags"), "line": n})
    return out


def read_entries(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".md", ".markdown"):
        raise UserError(f"{path}: expected a .md or .json strategy library")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {size:,} bytes; a strategy library file may hold at most {MAX_FILE_BYTES:,}")
    try:
        text = path.read_bytes().decode("utf-8")  # bytes: no newline translation (\\r stays \\r)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_json(path, text) if suffix == ".json" else parse_markdown(path, text)


def import_library(path: str | Path, db: str | Path | Store, *, editor: str | None = None) -> dict[str, int]:
    """Apply the file's edits; returns counts {strategies, changed, unchanged}."""
    entries = read_entries(path)
    if not entries:
        raise UserError(f"{path}: holds no strategies")
    first: dict[str, Any] = {}
    for entry in entries:
        seen = first.setdefault(entry["id"], entry["line"])
        if seen != entry["line"]:
            raise UserError(f"{path}:{entry['line']}: strategy {shown(entry['id'], 80)} appears twice (first at {seen})")
    with library_opened(db) as store:
        changes = [_checked(store, Path(path), e) for e in entries]
        changed = 0
        with store.transaction():
            for entry in changes:
                changed += edit(store, entry["id"], text=entry["text"], tags=entry.get("tags"), status=entry.get("status"),
                                editor=editor or f"import:{Path(path).name}", note="imported edit")  # fmt: skip
        return {"strategies": len(entries), "changed": changed, "unchanged": len(entries) - changed}


def _checked(store: Store, path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as an edit: only what differs from the stored strategy (None = unchanged)."""
    where = f"{path}:{entry['line']}"
    try:
        current = get(store, entry["id"])
    except UserError:
        raise UserError(f"{where}: strategy {shown(entry['id'], 80)!r} is not in {store.path}") from None
    status = entry.get("status") or current.status
    if status not in STATUSES:
        raise UserError(f"{where}: status {shown(status, 80)!r} is not one of {', '.join(EDITABLE_STATUSES)}")
    if status != current.status and status == "merged":
        raise UserError(f"{where}: status 'merged' is set by learn, not by hand")
    tags = entry.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise UserError(f"{where}: tags must be a list of strings")
    if tags is not None and [t.strip() for t in tags if t.strip()] == [t.strip() for t in current.tags if t.strip()]:
        tags = None
    text = entry["text"] if entry["text"].strip() != current.text.strip() else None
    if text is not None:
        _check_text(where, entry["id"], text)
    for tag in tags or ():
        _check_text(where, entry["id"], tag, what="a tag", limit=MAX_TAG_CHARS)
    if tags is not None and len(tags) > MAX_TAGS:
        raise UserError(f"{where}: strategy {entry['id']} has {len(tags)} tags; at most {MAX_TAGS}")
    return {**entry, "text": text, "tags": tags, "status": status if status != current.status else None}


def _check_text(where: str, sid: str, text: str, *, what: str = "its text", limit: int = MAX_TEXT_CHARS) -> None:
    if not text.strip():
        raise UserError(f"{where}: strategy {sid} has an empty text")
    if len(text) > limit:
        raise UserError(f"{where}: strategy {sid}: {what} has {len(text):,} characters; at most {limit:,}")
    if valid_unicode(text) != text:
        raise UserError(f"{where}: strategy {sid}: {what} holds a lone surrogate (not valid Unicode)")
