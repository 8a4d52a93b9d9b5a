"""Streaming GraphML and GEXF writers (networkx's writers hold the whole XML tree in memory).

Both write nodes from the node table, then stream edges, so memory stays flat at any size.
``networkx.read_graphml(path, edge_key_type=str, force_multigraph=True)`` and
``networkx.read_gexf(path)`` read the files back to the graph :func:`build_graph` makes.
"""

from __future__ import annotations

import re
from datetime import date
from typing import IO, Any, Iterable

from symkd.graphs.build import NODE_ATTRS

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPECIAL = re.compile('[&<>"\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
_GRAPHML_TYPES = {str: "string", int: "long", float: "double"}
_GEXF_TYPES = {str: "string", int: "long", float: "double"}
Edge = tuple[str, str, str, dict[str, Any]]


def _esc(value: Any) -> str:
    """A value as XML text, safe in element content and in double-quoted attributes.

    Characters XML cannot carry are dropped; tab and line breaks become character references
    so they survive attribute-value normalisation; floats keep full precision.
    """
    if isinstance(value, float):
        return repr(value)
    text = value if isinstance(value, str) else str(value)
    if _SPECIAL.search(text) is None:  # the common case: nothing to escape
        return text
    text = _ILLEGAL.sub("", text)
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def write_graphml(
    fh: IO[str], nodes: Iterable[tuple[str, dict]], edges: Iterable[Edge], edge_schema: list[tuple[str, type]], graph: dict[str, str]
) -> int:
    """GraphML 1.0: ``<key>`` per attribute, then nodes, then edges (id = triple id); returns edges."""
    fh.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
    )
    gkeys = {name: f"g{i}" for i, name in enumerate(graph)}
    nkeys = {name: f"n{i}" for i, name in enumerate(NODE_ATTRS)}
    ekeys = {name: f"e{i}" for i, (name, _) in enumerate(edge_schema)}
    for name, key in gkeys.items():
        fh.write(f'<key id="{key}" for="graph" attr.name="{_esc(name)}" attr.type="string"/>\n')
    for name, key in nkeys.items():
        fh.write(f'<key id="{key}" for="node" attr.name="{_esc(name)}" attr.type="string"/>\n')
    for (name, kind), key in zip(edge_schema, ekeys.values()):
        fh.write(f'<key id="{key}" for="edge" attr.name="{_esc(name)}" attr.type="{_GRAPHML_TYPES[kind]}"/>\n')
    fh.write('<graph edgedefault="directed">\n')
    for name, value in graph.items():
        fh.write(f'<data key="{gkeys[name]}">{_esc(value)}</data>\n')
    for nid, data in nodes:
        body = "".join(f'<data key="{nkeys[k]}">{_esc(v)}</data>' for k, v in data.items())
        fh.write(f'<node id="{_esc(nid)}">{body}</node>\n')
    n = 0
    for u, v, key, data in edges:
        body = "".join(f'<data key="{ekeys[k]}">{_esc(val)}</data>' for k, val in data.items())
        fh.write(f'<edge id="{_esc(key)}" source="{_esc(u)}" target="{_esc(v)}">{body}</edge>\n')
        n += 1
    fh.write("</graph>\n</graphml>\n")
    return n


def write_gexf(
    fh: IO[str], nodes: Iterable[tuple[str, dict]], edges: Iterable[Edge], edge_schema: list[tuple[str, type]], graph: dict[str, str]
) -> int:
    """GEXF 1.2draft (Gephi): node label, attvalues, edges with id = triple id, label = relation."""
    description = "; ".join(f"{k}: {v}" for k, v in graph.items())
    fh.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gexf xmlns="http://www.gexf.net/1.2draft" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.gexf.net/1.2draft http://www.gexf.net/1.2draft/gexf.xsd" version="1.2">\n'
        f'<meta lastmodifieddate="{date.today().isoformat()}"><creator>symkd</creator>'
        f"<description>{_esc(description)}</description></meta>\n"
        '<graph defaultedgetype="directed" mode="static">\n'
    )
    nattrs = {name: str(i) for i, name in enumerate(a for a in NODE_ATTRS if a != "label")}
    eattrs = {name: str(i) for i, (name, _) in enumerate(edge_schema)}
    fh.write('<attributes class="node" mode="static">\n')
    for name, key in nattrs.items():
        fh.write(f'<attribute id="{key}" title="{_esc(name)}" type="string"/>\n')
    fh.write('</attributes>\n<attributes class="edge" mode="static">\n')
    for (name, kind), key in zip(edge_schema, eattrs.values()):
        fh.write(f'<attribute id="{key}" title="{_esc(name)}" type="{_GEXF_TYPES[kind]}"/>\n')
    fh.write("</attributes>\n<nodes>\n")
    for nid, data in nodes:
        values = "".join(f'<attvalue for="{nattrs[k]}" value="{_esc(v)}"/>' for k, v in data.items() if k != "label")
        body = f"<attvalues>{values}</attvalues>" if values else ""
        label = _esc(data.get("label", nid))
        fh.write(f'<node id="{_esc(nid)}" label="{label}">{body}</node>\n')
    fh.write("</nodes>\n<edges>\n")
    n = 0
    for u, v, key, data in edges:
        values = "".join(f'<attvalue for="{eattrs[k]}" value="{_esc(val)}"/>' for k, val in data.items())
        body = f"<attvalues>{values}</attvalues>" if values else ""
        fh.write(
            f'<edge id="{_esc(key)}" source="{_esc(u)}" target="{_esc(v)}" label="{_esc(data["relation"])}">{body}</edge>\n'
        )
        n += 1
    fh.write("</edges>\n</graph>\n</gexf>\n")
    return n
