"""Exports of the curated knowledge graph: one function per format, registered in :data:`FORMATS`.

Every file is written to a temporary name beside its target and renamed on success
(:func:`symkd.jsonio.atomic_write`), so a crash never leaves a half-written export. Rows stream
from SQLite; only the node table (one small entry per node) is held in memory.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from symkd.errors import UserError
from symkd.graphs.build import IN, OUT, Selection, TripleSource, node_attrs, sample_nodes, snapshot
from symkd.graphs.html import write_html
from symkd.graphs.xmlout import write_gexf, write_graphml
from symkd.jsonio import atomic_write, check_writable, is_stdout
from symkd.plugins import Registry
from symkd.safetext import json_escape_unsafe
from symkd.store.db import Store

_BREAKS = re.compile(r"[\t\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
#: NUL and the other control characters: TSV and CSV readers (neo4j-admin) choke on them
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
NEO4J_TYPES = {str: "", int: ":long", float: ":double"}
NEO4J_LABELS = {"event": "Event", "entity": "Entity", "inference": "Inference", "none": "NoneTail"}
NODE_COLUMNS = ("text", "type", "groups", "none_relations", "origin", "status")


@dataclass(frozen=True)
class Options:
    progress: bool = False
    #: nodes in the HTML preview
    sample: int = 300


@dataclass(frozen=True)
class Format:
    name: str
    write: Callable[[TripleSource, Path, Options], dict[str, Any]]
    description: str
    #: True when --out names a folder (neo4j writes two files into it)
    folder: bool = False


def _graph_info(src: TripleSource) -> dict[str, str]:
    return {"selection": src.sel.describe()}


def _nodes(table: dict[str, list], groups: tuple[str, ...]):
    return ((nid, node_attrs(entry, groups)) for nid, entry in table.items())


def export_graphml(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """GraphML for yEd, Gephi, Cytoscape; streamed (see :mod:`symkd.graphs.xmlout`)."""
    table = src.node_table(opts.progress)
    with atomic_write(out) as fh:
        edges = write_graphml(fh, _nodes(table, src.groups), src.edges(progress=opts.progress), src.edge_schema(), _graph_info(src))
    return {"nodes": len(table), "edges": edges}


def export_gexf(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """GEXF 1.2 for Gephi; streamed."""
    table = src.node_table(opts.progress)
    with atomic_write(out) as fh:
        edges = write_gexf(fh, _nodes(table, src.groups), src.edges(progress=opts.progress), src.edge_schema(), _graph_info(src))
    return {"nodes": len(table), "edges": edges}


def export_json(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """networkx node-link JSON (``node_link_graph(data, edges="edges")`` reads it); streamed."""
    table = src.node_table(opts.progress)
    encode = json.JSONEncoder(ensure_ascii=False).encode

    def dumps(obj: Any) -> str:  # C1 controls, U+2028 and the like as \uXXXX: safe to print
        return json_escape_unsafe(encode(obj))

    edges = 0
    with atomic_write(out) as fh:
        fh.write(f'{{"directed": true, "multigraph": true, "graph": {dumps(_graph_info(src))},\n"nodes": [\n')
        for i, (nid, data) in enumerate(_nodes(table, src.groups)):
            fh.write((",\n" if i else "") + dumps({"id": nid, **data}))
        fh.write('\n],\n"edges": [\n')
        for u, v, key, data in src.edges(progress=opts.progress):
            fh.write((",\n" if edges else "") + dumps({"source": u, "target": v, "key": key, **data}))
            edges += 1
        fh.write("\n]}\n")
    return {"nodes": len(table), "edges": edges}


def flat(text: str) -> str:
    """One-line text: tabs and line breaks become spaces, NUL and other control characters go."""
    return _BREAKS.sub(" ", _CONTROLS.sub("", text)).strip()


def export_neo4j(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """``nodes.csv`` + ``relationships.csv`` in ``out/`` for ``neo4j-admin database import full``."""
    table = src.node_table(opts.progress)
    schema = src.edge_schema()
    rel_header = [":START_ID", ":END_ID", ":TYPE", "id"] + [f"{name}{NEO4J_TYPES[kind]}" for name, kind in schema if name != "relation"]
    rel_names = [name for name, _ in schema if name != "relation"]
    edges = 0
    with atomic_write(out / "nodes.csv") as nf, atomic_write(out / "relationships.csv") as rf:
        nodes_csv = csv.writer(nf, lineterminator="\n")
        nodes_csv.writerow(["id:ID", *NODE_COLUMNS, ":LABEL"])
        for nid, data in _nodes(table, src.groups):
            data["text"] = data.pop("label")
            nodes_csv.writerow([nid, *(flat(data.get(c, "")) for c in NODE_COLUMNS), f"Node;{NEO4J_LABELS[data['type']]}"])
        rels_csv = csv.writer(rf, lineterminator="\n")
        rels_csv.writerow(rel_header)
        for u, v, key, data in src.edges(progress=opts.progress):
            values = ["" if data.get(n) is None else (repr(data[n]) if isinstance(data[n], float) else flat(str(data[n]))) for n in rel_names]
            rels_csv.writerow([u, v, data["relation"], key, *values])
            edges += 1
    return {"nodes": len(table), "edges": edges, "files": [str(out / "nodes.csv"), str(out / "relationships.csv")]}


def export_html(src: TripleSource, out: Path, opts: Options) -> dict[str, Any]:
    """Interactive preview of a sample: the top hubs and their best-connected neighbours."""
    table = src.node_table(opts.progress)
    keep = sample_nodes(src, table, opts.sample)
    nodes = [(nid, node_attrs(e, src.groups), e[OUT] + e[IN]) for nid, e in table.items() if nid in keep]
    edges = list(src.edges(keep=keep))
    heading = f"{len(nodes)} of {len(table)} nodes (top hubs and neighbours), {len(edges)} edges; {src.sel.describe()}"
    with atomic_write(out) as fh:
        shown_nodes, shown_edges = write_html(fh, nodes, edges, heading=heading)
    return {"nodes": shown_nodes, "edges": shown_edges, "graph_nodes": len(table)}


BUILTIN_FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("graphml", export_graphml, "GraphML (yEd, Gephi, Cytoscape)"),
        Format("gexf", export_gexf, "GEXF 1.2 (Gephi)"),
        Format("json", export_json, "networkx node-link JSON"),
        Format("neo4j", export_neo4j, "nodes.csv + relationships.csv for neo4j-admin import", folder=True),
        Format("html", export_html, "interactive preview of a sample (self-contained)"),
    ]
}
#: formats pipelines and users add (a :class:`Format` per name, entry-point group ``symkd.exports``)
EXPORTS = Registry("symkd.exports", "export format")


class Formats(Mapping[str, Format]):
    """The built-in formats, then those of the ``symkd.exports`` entry points (imported on use)."""

    def _names(self) -> list[str]:
        return [*BUILTIN_FORMATS, *(n for n in EXPORTS.names() if n not in BUILTIN_FORMATS)]

    def __getitem__(self, name: str) -> Format:
        if name in BUILTIN_FORMATS:
            return BUILTIN_FORMATS[name]
        if name not in EXPORTS:
            raise KeyError(name)
        fmt = EXPORTS.load(name)
        if not isinstance(fmt, Format):
            raise UserError(f"export format {name!r}: {EXPORTS.target(name)!r} is not a symkd.graphs.export.Format")
        return fmt

    def __contains__(self, name: object) -> bool:
        return name in BUILTIN_FORMATS or name in EXPORTS

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


FORMATS = Formats()


def check_out(fmt: Format, out: Path) -> None:
    """Fail before any work when ``out`` cannot be written (see :func:`symkd.jsonio.check_writable`)."""
    if not fmt.folder:
        check_writable(out)
        return
    if is_stdout(out):
        raise UserError(f"{out}: the {fmt.name} export writes a folder of CSV files, not standard output")
    if not out.parent.exists():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; the {fmt.name} export writes a folder of CSV files")
    for name in ("nodes.csv", "relationships.csv"):
        if out.is_dir():
            check_writable(out / name)


def export(store: Store, fmt: str, out: str | Path, sel: Selection = Selection(), *, sample: int = 300, progress: bool = False) -> dict[str, Any]:
    """Write the selection in format ``fmt`` to ``out``; returns a summary (counts, files, seconds)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    spec, out = FORMATS[fmt], Path(out)
    check_out(spec, out)
    if fmt == "html" and sample < 1:
        raise UserError(f"--sample must be at least 1 (got {sample})")
    start = time.perf_counter()
    with snapshot(store):  # both passes (nodes, then edges) see the same triples
        src = TripleSource(store, sel)
        if spec.folder:
            out.mkdir(exist_ok=True)
        summary = spec.write(src, out, Options(progress=progress, sample=sample))
    summary.setdefault("files", [str(out)])
    return {"format": fmt, "out": str(out), **summary, "seconds": round(time.perf_counter() - start, 3)}

