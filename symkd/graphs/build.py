"""Curated triples -> a typed, attributed ``networkx.MultiDiGraph``, and the scans exports share.

Node ids are stable for a given store: ``e:<events.id>`` for a head (and for a tail whose
normalised text is also a head somewhere in the store, which links inferences back into
events), ``t:<sha1(normalised tail)[:16]>`` for any other tail, ``t:none`` for the "none" tail.
A tail text shared by several heads is one node. Edge key = ``triples.id``. The selection
(critics, min score, relations) is :func:`symkd.graphs.triples.curated_triples`'s own
SQL, captured and wrapped, so rows stream from SQLite instead of being listed in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from symkd.errors import UserError
from symkd.graphs.relations import RelationSchema, get_schema
from symkd.graphs.triples import NONE_TAIL, TRIPLE_TABLE, curated_sql, event_id, normalize
from symkd.store.db import Store, latest_version

NONE_NODE = "t:none"
#: tail text -> node id entries kept between scans (bounds memory on huge graphs)
TAIL_CACHE = 1_000_000
_UNSAFE = re.compile(r"[^0-9A-Za-z_]")
#: triples column -> (edge attribute, type); ``source`` becomes ``origin`` so it cannot clash
#: with the endpoint called "source" in node-link JSON. None values are left out.
EDGE_COLUMNS: dict[str, tuple[str, type]] = {
    "source": ("origin", str), "round": ("round", int), "run_id": ("run_id", str),
    "template_id": ("template_id", str), "template_version": ("template_version", str),
    "response_key": ("response_key", str), "sample": ("sample", int),
    "logprob_sum": ("logprob_sum", float), "created_at": ("created_at", str),
}
#: node attributes (all strings; empty ones are left out); ``origin`` is events.source
NODE_ATTRS = ("label", "type", "groups", "none_relations", "origin", "status")
# node table entry: [label, type, groups bitmask, out degree, in degree, none relations, source, status]
LABEL, TYPE, GROUPBITS, OUT, IN, NONES, SOURCE, STATUS = range(8)


@dataclass(frozen=True)
class Selection:
    """Which curated triples make the graph (the same filters as ``curated_triples``)."""

    critics: tuple[str, ...] = ()
    min_score: float | None = None
    relations: tuple[str, ...] = ()
    include_none: bool = False
    #: the relation schema (a ``symkd.relations`` name or the schema); None: the default one
    schema: str | RelationSchema | None = None

    def describe(self) -> str:
        if not self.critics:
            kept = "all triples"
        elif self.min_score is None:
            kept = f"kept by {', '.join(self.critics)}"
        else:
            kept = f"scored >= {self.min_score:g} by {', '.join(self.critics)}"
        rels = ",".join(self.relations) if self.relations else "all"
        return f"{kept}; relations: {rels}; none tails {'included' if self.include_none else 'excluded'}"


def attr_name(critic: str) -> str:
    """The attribute-safe form of a critic name (``score_<this>``, ``decision_<this>``)."""
    return _UNSAFE.sub("_", critic)


def groups_text(bits: int, groups: tuple[str, ...]) -> str:
    return ",".join(g for i, g in enumerate(groups) if bits & (1 << i))


def open_store(path: str | Path) -> Store:
    """Open a run database read-only; a clear error when it is missing or not a symkd store."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a SQLite run database")
    store = Store(path, create=False, readonly=True)
    try:
        tables = set(store.db.table_names())
    except sqlite3.DatabaseError as exc:
        store.close()
        raise UserError(f"{path}: not a usable SQLite database ({exc})") from None
    missing = sorted({"events", "triples", "critic_scores"} - tables)
    if missing:
        store.close()
        raise UserError(f"{path}: no {', '.join(missing)} table (not a symkd run database with curated knowledge)")
    return store


@contextlib.contextmanager
def snapshot(store: Store) -> Iterator[None]:
    """One read transaction, so every scan inside sees the same state while others write (WAL)."""
    if store.conn.in_transaction:
        yield
        return
    store.conn.execute("begin")
    try:
        yield
    finally:
        store.conn.execute("rollback")


def _captured_sql(sel: Selection) -> tuple[str, list[Any]]:
    """The SQL ``curated_triples`` runs for ``sel`` (one definition of the filters)."""
    return curated_sql(critics=sel.critics, min_score=sel.min_score, relations=sel.relations)


class TripleSource:
    """A store plus a selection: the streaming scans every graph view and export is built from."""

    def __init__(self, store: Store, sel: Selection = Selection()):
        self.store, self.sel = store, sel
        self.schema = get_schema(sel.schema)
        for rel in sel.relations:
            self.schema.check(rel)
        #: the schema's categories, in order: node ``groups`` are a bitmask over these
        self.groups = tuple(self.schema.categories)
        self._bits = {r: 1 << self.groups.index(c) for r in self.schema if (c := self.schema.category(r))}
        if sel.min_score is not None and not sel.critics:
            raise UserError("--min-score needs --critic NAME (the critic whose score is compared)")
        rows = store.conn.execute(
            "select distinct critic, critic_version from critic_scores where item_table = ? order by critic", (TRIPLE_TABLE,)
        ).fetchall()
        #: every critic that scored triples -> its latest version (each becomes edge attributes)
        self.critics: dict[str, str] = {}
        for name, version in rows:
            self.critics[name] = latest_version([v for n, v in rows if n == name])  # type: ignore[assignment]
        for name in sel.critics:
            if name not in self.critics:
                known = ", ".join(self.critics) or "none scored yet"
                raise UserError(f"{store.path}: critic {name!r} has no scores for triples (critics: {known})")
        self.sql, self.params = _captured_sql(sel)
        #: (row column, edge attribute, type) after relation and group, in edge_schema() order
        self._attr_columns = [
            (col, name, kind)
            for i, critic in enumerate(self.critics)
            for col, name, kind in ((f"_score{i}", f"score_{attr_name(critic)}", float), (f"_decision{i}", f"decision_{attr_name(critic)}", str))
        ] + [(col, name, kind) for col, (name, kind) in EDGE_COLUMNS.items()]
        self._head_ids: set[str] | None = None
        self._tails: dict[str, str | None] = {}
        #: per relation: [triples, "none" tails], filled by node_table()
        self.relation_counts: dict[str, list[int]] = {}

    # -- node ids --------------------------------------------------------------------
    @property
    def head_ids(self) -> set[str]:
        """Ids of every head in the store (events table and triples), whatever the selection."""
        if self._head_ids is None:
            cur = self.store.conn.execute("select id from events union select head_id from triples where head_id is not null")
            self._head_ids = {row[0] for row in cur}
        return self._head_ids

    def tail_node(self, tail: str) -> str | None:
        """The node id of a tail; None for the "none" tail (cached: tails repeat across passes)."""
        try:
            return self._tails[tail]
        except KeyError:
            pass
        key = normalize(tail or "")
        if key == NONE_TAIL:
            node = None
        else:
            digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
            node = ("e:" if digest in self.head_ids else "t:") + digest
        if len(self._tails) >= TAIL_CACHE:
            self._tails.clear()
        self._tails[tail] = node
        return node

    # -- scans -----------------------------------------------------------------------
    def count(self) -> int:
        return self.store.conn.execute(f"select count(*) from ({self.sql})", self.params).fetchone()[0]

    def rows(self, *, full: bool = False, order: str | None = None) -> Iterator[dict[str, Any]]:
        """Selected triples as dicts; ``full`` adds every column and ``_score``/``_decision`` per critic."""
        cols = "x.*" if full else "x.id, x.head, x.head_id, x.relation, x.tail"
        joins, params = "", list(self.params)
        if full:
            for i, (name, version) in enumerate(self.critics.items()):
                cols += f", s{i}.score as _score{i}, s{i}.decision as _decision{i}"
                joins += (
                    f" left join critic_scores s{i} on s{i}.item_table = 'triples' and s{i}.item_id = x.id"
                    f" and s{i}.critic = ? and s{i}.critic_version = ?"
                )
                params += [name, version]
        sql = f"select {cols} from ({self.sql}) x{joins}" + (f" order by {order}" if order else "")
        cur = self.store.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row))

    def endpoints(self, row: dict[str, Any]) -> tuple[str, str | None]:
        """(head node, tail node or None for an excluded "none" tail) of a selected row."""
        head = "e:" + (row["head_id"] or event_id(row["head"]))
        tail = self.tail_node(row["tail"])
        if tail is None and self.sel.include_none:
            tail = NONE_NODE
        return head, tail

    def edge_attrs(self, row: dict[str, Any]) -> dict[str, Any]:
        """GraphML/GEXF-legal edge attributes of a full row (no None, no nested values)."""
        rel = row["relation"]
        out: dict[str, Any] = {"relation": rel}
        group = self.schema.category(rel)
        if group is not None:
            out["group"] = group
        for column, name, kind in self._attr_columns:
            value = row[column]
            if value is not None:
                out[name] = value if type(value) is kind else kind(value)
        return out

    def edge_schema(self) -> list[tuple[str, type]]:
        """Every edge attribute an export may carry, in a fixed order, with its type."""
        return [("relation", str), ("group", str)] + [(name, kind) for _, name, kind in self._attr_columns]

    def node_table(self, progress: bool = False) -> dict[str, list]:
        """Pass 1: every node of the selection with label, type, groups and degrees."""
        table: dict[str, list] = {}
        self.relation_counts = {}
        for row in progress_bar(self.rows(), progress, "nodes", self.count() if progress else None):
            head, tail = self.endpoints(row)
            counts = self.relation_counts.setdefault(row["relation"], [0, 0])
            counts[0] += 1
            if tail is None or tail == NONE_NODE:
                counts[1] += 1
            entry = table.get(head)
            if entry is None:
                entry = table[head] = [row["head"], None, 0, 0, 0, None, None, None]
            if tail is None:
                entry[NONES] = (entry[NONES] or set()) | {row["relation"]}
                continue
            bit = self._bits.get(row["relation"], 0)
            entry[GROUPBITS] |= bit
            entry[OUT] += 1
            other = table.get(tail)
            if other is None:
                kind = "none" if tail == NONE_NODE else ("inference" if tail.startswith("t:") else None)
                label = NONE_TAIL if tail == NONE_NODE else row["tail"]
                other = table[tail] = [label, kind, 0, 0, 0, None, None, None]
            other[GROUPBITS] |= bit
            other[IN] += 1
        self._add_event_info(table)
        return table

    def _add_event_info(self, table: dict[str, list]) -> None:
        heads = [nid for nid in table if nid.startswith("e:")]
        for i in range(0, len(heads), 500):
            chunk = [nid[2:] for nid in heads[i : i + 500]]
            sql = f"select id, text, kind, source, status from events where id in ({','.join('?' * len(chunk))})"
            for eid, text, kind, source, status in self.store.conn.execute(sql, chunk):
                entry = table["e:" + eid]
                entry[LABEL] = text or entry[LABEL]
                entry[TYPE], entry[SOURCE], entry[STATUS] = kind, source, status
        for nid in heads:
            entry = table[nid]
            if entry[TYPE] not in ("event", "entity"):
                entry[TYPE] = self.schema.kind_of_head(entry[LABEL])

    def edges(self, keep: set[str] | None = None, progress: bool = False) -> Iterator[tuple[str, str, str, dict]]:
        """Pass 2: (head node, tail node, triple id, attributes), in the selection's order."""
        total = self.count() if progress else None
        for row in progress_bar(self.rows(full=True), progress, "edges", total):
            head, tail = self.endpoints(row)
            if tail is None or (keep is not None and (head not in keep or tail not in keep)):
                continue
            yield head, tail, row["id"], self.edge_attrs(row)


def node_attrs(entry: list, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """GraphML/GEXF-legal node attributes of a node-table entry (empty values left out);
    ``groups``: the schema categories the entry's group bits refer to (:attr:`TripleSource.groups`)."""
    out = {"label": str(entry[LABEL]), "type": entry[TYPE]}
    extra = {
        "groups": groups_text(entry[GROUPBITS], groups),
        "none_relations": ",".join(sorted(entry[NONES] or ())),
        "origin": entry[SOURCE],
        "status": entry[STATUS],
    }
    out.update({k: str(v) for k, v in extra.items() if v})
    return out


def build_graph(store: Store, sel: Selection = Selection(), *, nodes: set[str] | None = None, progress: bool = False):
    """The selection as a MultiDiGraph (``nodes``: keep only these nodes and the edges among them)."""
    import networkx as nx

    with snapshot(store):
        src = TripleSource(store, sel)
        table = src.node_table(progress)
        graph = nx.MultiDiGraph(selection=sel.describe())
        graph.add_nodes_from((nid, node_attrs(e, src.groups)) for nid, e in table.items() if nodes is None or nid in nodes)
        graph.add_edges_from(src.edges(keep=nodes, progress=progress))
    return graph


def sample_nodes(src: TripleSource, table: dict[str, list], size: int) -> set[str]:
    """About ``size`` nodes: the top hubs by degree and each hub's best-connected neighbours."""
    if len(table) <= size:
        return set(table)
    degree = {nid: e[OUT] + e[IN] for nid, e in table.items()}
    n_hubs = max(1, size // 10)
    per_hub = max(1, (size - n_hubs) // n_hubs)
    # candidates beyond n_hubs fill the budget when hubs share neighbours
    hubs = [nid for nid, _ in heapq.nlargest(3 * n_hubs, degree.items(), key=lambda kv: (kv[1], kv[0]))]
    best: dict[str, list[tuple[int, str]]] = {h: [] for h in hubs}
    for row in src.rows():
        head, tail = src.endpoints(row)
        if tail is None:
            continue
        for hub, other in ((head, tail), (tail, head)):
            heap = best.get(hub)
            if heap is None or any(o == other for _, o in heap):
                continue
            item = (degree[other], other)
            if len(heap) < per_hub:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    chosen: dict[str, None] = {}
    for hub in hubs:
        chosen[hub] = None
        for _, other in sorted(best[hub], reverse=True):
            if len(chosen) >= size:
                break
            chosen[other] = None
        if len(chosen) >= size:
            break
    return set(chosen)


def progress_bar(it, enabled: bool, label: str, total: int | None):
    """``it`` wrapped in a progress bar (:func:`symkd.progress.bar`) when ``enabled``."""
    if not enabled:
        return it
    from symkd.progress import bar

    return bar(it, total=total, desc=label, unit="triple")
