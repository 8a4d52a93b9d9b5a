"""The curated knowledge graph: build it from a run store, export it, describe it.

See ``graphs/README.md`` for the schema (node ids and types, edge attributes, file layouts).
"""

from symkd.graphs.build import NONE_NODE, Selection, TripleSource, build_graph, open_store
from symkd.graphs.export import FORMATS, export
from symkd.graphs.stats import graph_stats, plot_stats

__all__ = [
    "FORMATS",
    "NONE_NODE",
    "Selection",
    "TripleSource",
    "build_graph",
    "export",
    "graph_stats",
    "open_store",
    "plot_stats",
]
