"""Graph statistics: triples per relation, critic decisions, degree distribution, top hubs."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.graphs.build import IN, LABEL, OUT, TYPE, Selection, TripleSource, snapshot
from symkd.jsonio import atomic_write
from symkd.store.db import Store


def graph_stats(store: Store, sel: Selection = Selection(), *, top: int = 20, progress: bool = False) -> dict[str, Any]:
    """Counts for the selection (one streaming pass plus one SQL count per critic)."""
    with snapshot(store):
        return _stats(store, TripleSource(store, sel), top, progress)


def _stats(store: Store, src: TripleSource, top: int, progress: bool) -> dict[str, Any]:
    sel = src.sel
    table = src.node_table(progress)
    order = {name: i for i, name in enumerate(src.schema)}
    relations = {
        rel: {"triples": n, "none": none}
        for rel, (n, none) in sorted(src.relation_counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    }
    total = sum(r["triples"] for r in relations.values())
    critics = {}
    for name, version in src.critics.items():
        rows = store.conn.execute(
            f"select s.decision, count(*) from ({src.sql}) x join critic_scores s on s.item_table = 'triples' "
            "and s.item_id = x.id and s.critic = ? and s.critic_version = ? group by s.decision",
            [*src.params, name, version],
        ).fetchall()
        counts = {decision: n for decision, n in rows}
        scored = sum(counts.values())
        critics[name] = {"version": version, "keep": counts.get("keep", 0), "drop": counts.get("drop", 0), "unscored": total - scored}
    degree = {nid: e[OUT] + e[IN] for nid, e in table.items()}
    histogram = sorted(Counter(degree.values()).items())
    hubs = sorted(degree.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    values = list(degree.values())
    return {
        "selection": sel.describe(),
        "triples": total,
        "none_triples": sum(r["none"] for r in relations.values()),
        "nodes": len(table),
        "edges": sum(e[OUT] for e in table.values()),
        "node_types": dict(Counter(e[TYPE] for e in table.values()).most_common()),
        "relations": relations,
        "critics": critics,
        "degree": {
            "mean": round(statistics.fmean(values), 3) if values else 0.0,
            "median": statistics.median(values) if values else 0,
            "max": max(values, default=0),
            "isolated": sum(1 for v in values if v == 0),
            "histogram": [[d, n] for d, n in histogram],
        },
        "hubs": [
            {"id": nid, "label": table[nid][LABEL], "type": table[nid][TYPE], "degree": d, "out": table[nid][OUT], "in": table[nid][IN]}
            for nid, d in hubs
        ],
    }


def plot_stats(stats: dict[str, Any], out: str | Path) -> Path:
    """A PNG: triples per relation (none tails stacked) and the degree distribution (log-log)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install matplotlib)") from None

    out = Path(out)
    fig = Figure(figsize=(13, 5), layout="constrained")
    bars, dist = fig.subplots(1, 2, width_ratios=[3, 2])
    names = list(stats["relations"])
    real = [r["triples"] - r["none"] for r in stats["relations"].values()]
    none = [r["none"] for r in stats["relations"].values()]
    bars.bar(names, real, color="#4e79a7", label="tails")
    bars.bar(names, none, bottom=real, color="#bab0ac", label='"none"')
    bars.set_title(f"Triples per relation ({stats['triples']:,} in all)")
    bars.tick_params(axis="x", labelrotation=60)
    bars.legend()
    points = [(d, n) for d, n in stats["degree"]["histogram"] if d > 0]
    if points:
        dist.loglog([d for d, _ in points], [n for _, n in points], "o", markersize=4, color="#f28e2b")
    dist.set_xlabel("degree (in + out)")
    dist.set_ylabel("nodes")
    dist.set_title(f"Degree distribution ({stats['nodes']:,} nodes)")
    with atomic_write(out, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return out
