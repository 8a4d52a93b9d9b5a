"""The library as Markdown (for human audit and editing), JSON and Parquet, and importing edits back.

The Markdown file is meant to be read and edited by a person: one ``###`` section per
strategy with ``- status:`` and ``- tags:`` lines and the text as a block quote. Everything a
model wrote (texts, tags, scenario ids) is backslash-escaped where Markdown would read it as
structure, so a strategy cannot open a heading, a list, an HTML comment or a code span; the
importer undoes exactly that escaping. ``symkd strategies import FILE.md|json`` applies the
changes it finds as new versions (see :func:`~.library.edit`); a file without the library
marker is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from symkd.errors import UserError
from symkd.jsonio import atomic_write, dumps
from symkd.store.db import Store, utcnow
from symkd.pipelines.strategies.library import STATUSES, Strategy, all_strategies, versions

MARKER = "<!-- symkd-strategies v1 -->"
JSON_FORMAT = "symkd-strategies"
FORMATS = ("md", "json", "parquet")
_SPECIAL = r"\\`*_\[\]<>#|~!&"
_ESCAPE = re.compile(f"[{_SPECIAL}]")
_ESCAPE_TAG = re.compile(f"[{_SPECIAL},]")
#: what could split a line, act on a terminal or not be written as UTF-8 becomes \uXXXX in the
#: file (tabs stay as they are; a strategy's own line breaks are its ``> `` lines)
_HIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
_UNESCAPE = re.compile(f"\\\\(?:([{_SPECIAL},])|u([0-9a-fA-F]{{4}}))")
SECTIONS = (("Library (accepted and edited)", ("accepted", "edited")), ("Merged into another", ("merged",)),
            ("Rejected", ("rejected",)))  # fmt: skip


def escape(text: str, *, tag: bool = False) -> str:
    """Backslash-escape Markdown's structural characters (and, in a tag, the commas that
    separate tags); every character that could split a line or act on a terminal becomes
    ``\\uXXXX``. :func:`unescape` reverses it exactly."""
    text = (_ESCAPE_TAG if tag else _ESCAPE).sub(r"\\\g<0>", text)
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: m.group(1) or chr(int(m.group(2), 16)), text)


def _evidence_line(ev: dict[str, Any]) -> str:
    if "validation" not in ev:
        return f"critic: {escape(str(ev.get('reason', '')))}" if ev else "none"
    v, k = ev["validation"], ev["control"]
    return (f"validation {v['base']:.3f} -> {v['with']:.3f} (n={v['n']}, +{v['improved']}/-{v['worsened']}, "
            f"sign test p={ev['p_value']:.3f}); control {k['base']:.3f} -> {k['with']:.3f} (n={k['n']})")  # fmt: skip


def _section(s: Strategy, merged: list[Strategy]) -> Iterator[str]:
    yield f"### {s.id}"
    yield ""
    yield f"- status: {s.status}"
    yield f"- tags: {', '.join(escape(t, tag=True) for t in s.tags)}"
    yield (f"- provenance: round {s.round}, teacher {escape(str(s.teacher))}, template "
           f"{escape(str(s.template_id))}@{escape(str(s.template_version))}, version {s.version}")  # fmt: skip
    yield f"- source scenarios: {', '.join(escape(x) for x in s.source_scenarios) or '-'}"
    yield f"- evidence: {_evidence_line(s.evidence)}"
    if s.reason:
        yield f"- decision: {escape(s.reason)}"
    if s.merged_into:
        yield f"- merged into: {s.merged_into}"
    for m in merged:
        yield f"- merged from {m.id}: {_evidence_line(m.evidence)}"
    yield ""
    yield from (f"> {escape(line)}" if line else ">" for line in s.text.split("\n"))
    yield ""


def to_markdown(store: Store, *, include_all: bool = True) -> str:
    strategies = all_strategies(store)
    merged: dict[str, list[Strategy]] = {}
    for s in strategies:
        if s.merged_into:
            merged.setdefault(s.merged_into, []).append(s)
    counts = {st: sum(s.status == st for s in strategies) for st in STATUSES}
    lines = ["# symkd strategy library", "", MARKER, "",
             f"{len(strategies)} strategies: " + ", ".join(f"{n} {st}" for st, n in counts.items()) + f". Exported {utcnow()}.",
             "", "To edit: change a strategy's quoted text, its `- tags:` line (comma-separated) or its `- status:` line "
             "(accepted | rejected | edited), then run `symkd strategies import THIS.md --db DB`. "
             "Leave the `###` id headings as they are; every change is kept as a new version.", ""]  # fmt: skip
    for title, statuses in SECTIONS:
        chosen = [s for s in strategies if s.status in statuses]
        if not chosen or (not include_all and "accepted" not in statuses):
            continue
        lines += [f"## {title}", ""]
        for s in chosen:
            lines += list(_section(s, merged.get(s.id, [])))
    return "\n".join(lines).rstrip() + "\n"


def to_json(store: Store) -> str:
    rows = []
    for s in all_strategies(store):
        rows.append({**s.as_dict(), "versions": versions(store, s.id)})
        rows[-1].pop("similarity")
    return dumps({"format": JSON_FORMAT, "version": 1, "exported_at": utcnow(), "strategies": rows}, indent=2) + "\n"


#: the Parquet columns of a strategy and their kinds (fixed, so the files of two libraries concatenate)
PARQUET_COLUMNS = (("id", "str"), ("text", "str"), ("status", "str"), ("tags", "strs"), ("source_scenarios", "strs"),
                   ("evidence", "str"), ("reason", "str"), ("merged_into", "str"), ("version", "int"),
                   ("learn_id", "str"), ("round", "int"), ("teacher", "str"), ("template_id", "str"),
                   ("template_version", "str"), ("response_key", "str"), ("created_at", "time"), ("updated_at", "time"),
                   ("embedding", "vector"))  # fmt: skip


def parquet_schema() -> Any:
    """The strategies' Parquet schema: JSON ``evidence`` as text, UTC timestamps, float32 embeddings."""
    import pyarrow as pa

    from symkd.graphs.arrow import arrow_type

    extra = {"strs": pa.list_(pa.string()), "vector": pa.list_(pa.float32())}
    return pa.schema([pa.field(name, extra[kind] if kind in extra else arrow_type(kind)) for name, kind in PARQUET_COLUMNS])


def _parquet_row(s: Strategy, vector: Any) -> dict[str, Any]:
    from symkd.graphs.arrow import parse_time

    row = s.as_dict()
    row["evidence"] = json.dumps(row["evidence"], ensure_ascii=False)
    row["embedding"] = None if vector is None else vector.tolist()
    for name in ("created_at", "updated_at"):
        row[name] = parse_time(row[name], f"strategy {s.id}")
    return {name: row.get(name) for name, _ in PARQUET_COLUMNS}


def write_parquet(store: Store, out: str | Path) -> int:
    """Every strategy (each status), with :func:`parquet_schema`'s types and symkd's file metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from symkd.embeddings import from_blob
    from symkd.graphs.arrow import parquet_metadata

    embedding = {r["id"]: from_blob(r["embedding"]) for r in store.query("select id, embedding from strategies")}
    rows = [_parquet_row(s, embedding.get(s.id)) for s in all_strategies(store)]
    schema = parquet_schema().with_metadata(parquet_metadata(selection="all strategies, every status", strategies=len(rows)))
    with atomic_write(out, "wb") as fh:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), fh)
    return len(rows)


def export_library(db: str | Path | Store, format: str = "md", out: str | Path | None = None) -> str | None:
    """The library as ``md`` or ``json`` text (written to ``out`` when given), or ``parquet`` to ``out``.

    The database is opened read-only; ``out`` is checked before anything is read and written
    whole or not at all (``-`` is standard output)."""
    from symkd.jsonio import check_writable
    from symkd.pipelines.strategies.library import library_opened

    if format not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)} (got {format!r})")
    if format == "parquet" and out is None:
        raise UserError("--format parquet needs --out FILE.parquet")
    if out is not None:
        check_writable(out)
    with library_opened(db, readonly=True) as store:
        if not store.scalar("select count(*) from strategies"):
            raise UserError(f"{store.path}: the strategy library is empty")
        if format == "parquet":
            write_parquet(store, out)  # type: ignore[arg-type]
            return None
        text = to_markdown(store) if format == "md" else to_json(store)
        if out is not None:
            with atomic_write(out) as fh:
                fh.write(text)
        return text
