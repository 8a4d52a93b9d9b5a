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
from symkd.store.db import Store
from symkd.pipelines.strategies.export import JSON_FORMAT, MARKER, unescape
from symkd.pipelines.strategies.library import STATUSES, edit, get, open_library

_HEADING = re.compile(r"^###\s+(\S+)\s*$")
_FIELD = re.compile(r"^-\s+(status|tags):\s?(.*)$")
EDITABLE_STATUSES = ("accepted", "rejected", "edited")


def parse_markdown(path: Path, text: str) -> list[dict[str, Any]]:
    if MARKER not in text or not text.lstrip().startswith("# symkd strategy library"):
        raise UserError(f"{path}: not a symkd strategy library (no '{MARKER}' marker)")
    entries: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
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
            current[field.group(1)] = [unescape(t.strip()) for t in value.split(",") if t.strip()] if field.group(1) == "tags" else value
    for entry in entries:
        entry["text"] = "\n".join(entry["text"]).strip()
        if not entry["text"]:
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
        out.append({"id": row["id"], "text": row["text"].strip(), "status": row.get("status"), "tags": row.get("tags"), "line": n})
    return out


def read_entries(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        return parse_json(path, text)
    if path.suffix.lower() in (".md", ".markdown"):
        return parse_markdown(path, text)
    raise UserError(f"{path}: expected a .md or .json strategy library")


def import_library(path: str | Path, db: str | Path | Store, *, editor: str | None = None) -> dict[str, int]:
    """Apply the file's edits; returns counts {strategies, changed, unchanged}."""
    entries = read_entries(path)
    if not entries:
        raise UserError(f"{path}: holds no strategies")
    store = open_library(db)
    try:
        changes = [_checked(store, Path(path), e) for e in entries]
        changed = 0
        with store.transaction():
            for entry in changes:
                changed += edit(store, entry["id"], text=entry["text"], tags=entry.get("tags"), status=entry.get("status"),
                                editor=editor or f"import:{Path(path).name}", note="imported edit")  # fmt: skip
        return {"strategies": len(entries), "changed": changed, "unchanged": len(entries) - changed}
    finally:
        if store is not db:
            store.close()


def _checked(store: Store, path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    where = f"{path}:{entry['line']}"
    try:
        current = get(store, entry["id"])
    except UserError:
        raise UserError(f"{where}: strategy {entry['id']!r} is not in {store.path}") from None
    status = entry.get("status") or current.status
    if status not in STATUSES:
        raise UserError(f"{where}: status {status!r} is not one of {', '.join(EDITABLE_STATUSES)}")
    if status != current.status and status == "merged":
        raise UserError(f"{where}: status 'merged' is set by learn, not by hand")
    tags = entry.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise UserError(f"{where}: tags must be a list of strings")
    if not entry["text"]:
        raise UserError(f"{where}: strategy {entry['id']} has an empty text")
    return {**entry, "status": status if status != current.status else None}
