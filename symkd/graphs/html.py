"""A self-contained interactive HTML preview of a graph sample (vis-network, inlined).

The vis-network script and stylesheet are copied into the page from the ``pyvis`` package
(which ships them), so the file opens offline: no CDN, no server.
"""

from __future__ import annotations

import html
import importlib.util
import json
from pathlib import Path
from typing import IO, Any, Iterable

from symkd.errors import UserError

COLORS = {"event": "#4e79a7", "entity": "#59a14f", "inference": "#f28e2b", "none": "#bab0ac"}
EDGE_COLORS = {"social": "#e15759", "event": "#76b7b2", "physical": "#b07aa1"}
MAX_LABEL = 40


def vis_assets() -> tuple[str, str]:
    """(vis-network.min.js, vis-network.css) text from the installed pyvis package."""
    spec = importlib.util.find_spec("pyvis")  # located, not imported (pyvis pulls in IPython)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the html export needs the pyvis package for its bundled vis-network (pip install pyvis)")
    base = Path(list(spec.submodule_search_locations)[0])
    for lib in (base / "templates" / "lib", base / "lib"):
        found = sorted(lib.glob("vis-*/vis-network.min.js"))
        if found:
            js = found[-1]
            return js.read_text(encoding="utf-8"), js.with_name("vis-network.css").read_text(encoding="utf-8")
    raise UserError(f"{base}: pyvis has no bundled vis-network.min.js (reinstall pyvis)")


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _node(nid: str, data: dict[str, str], degree: int) -> dict[str, Any]:
    lines = [data.get("label", nid), f"{data.get('type')} · degree {degree} · {nid}"]
    if data.get("none_relations"):
        lines.append(f"none for: {data['none_relations']}")
    return {"id": nid, "label": _short(data.get("label", nid)), "group": data.get("type"), "value": degree, "title": "\n".join(lines)}


def _edge(u: str, v: str, key: str, data: dict[str, Any]) -> dict[str, Any]:
    scores = [f"{k}={val:.3g}" if isinstance(val, float) else f"{k}={val}" for k, val in data.items() if k.startswith(("score_", "decision_"))]
    title = "\n".join([data["relation"], *scores, f"triple {key}"])
    color = EDGE_COLORS.get(data.get("group", ""), "#999999")
    return {"id": key, "from": u, "to": v, "title": title, "color": color, "arrows": "to"}


def write_html(
    fh: IO[str], nodes: Iterable[tuple[str, dict, int]], edges: Iterable[tuple[str, str, str, dict]], *, heading: str
) -> tuple[int, int]:
    """Write the page; ``nodes`` are (id, attributes, degree in the whole graph). Returns counts."""
    js, css = vis_assets()
    data = {"nodes": [_node(*n) for n in nodes], "edges": [_edge(*e) for e in edges]}
    # "<" escaped inside the JSON so no text can close the <script> element
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    groups = {t: {"color": c, "shape": "dot"} for t, c in COLORS.items()}
    options = {
        "groups": groups,
        "nodes": {"scaling": {"min": 6, "max": 40}, "font": {"size": 12}},
        "edges": {"smooth": False, "width": 0.8},
        "physics": {"solver": "barnesHut", "stabilization": {"iterations": 250}},
        "interaction": {"hover": True, "tooltipDelay": 120, "navigationButtons": False},
    }
    legend = " ".join(f'<span style="color:{c}">&#9679;</span> {t}' for t, c in COLORS.items())
    legend += " &nbsp; edges: " + " ".join(f'<span style="color:{c}">&#9473;</span> {g}' for g, c in EDGE_COLORS.items())
    fh.write(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>symkd knowledge graph</title>\n"
        f"<style>{css}</style>\n"
        "<style>body{margin:0;font:14px sans-serif}header{padding:6px 10px;border-bottom:1px solid #ddd;height:52px;"
        "box-sizing:border-box;overflow:hidden}#graph{position:absolute;top:52px;bottom:0;left:0;right:0}"
        "div.vis-tooltip{white-space:pre-wrap;max-width:420px}</style>\n"
        f"<script>{js}</script>\n</head><body>\n"
        f"<header><b>symkd knowledge graph</b> &mdash; {html.escape(heading)}<br>{legend} "
        '&nbsp; <input id="find" placeholder="find a node" size="24"></header>\n<div id="graph"></div>\n'
        f"<script>\nconst data = {payload};\nconst options = {json.dumps(options)};\n"
        "const nodes = new vis.DataSet(data.nodes), edges = new vis.DataSet(data.edges);\n"
        'const net = new vis.Network(document.getElementById("graph"), {nodes, edges}, options);\n'
        'net.once("stabilizationIterationsDone", () => net.setOptions({physics: false}));\n'
        'document.getElementById("find").addEventListener("change", (ev) => {\n'
        "  const q = ev.target.value.toLowerCase();\n"
        "  const hit = data.nodes.find((n) => n.title.toLowerCase().includes(q));\n"
        "  if (hit) { net.selectNodes([hit.id]); net.focus(hit.id, {scale: 1.5, animation: true}); }\n"
        "});\n</script>\n</body></html>\n"
    )
    return len(data["nodes"]), len(data["edges"])
