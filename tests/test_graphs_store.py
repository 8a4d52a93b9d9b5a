"""Knowledge graph and the store: bulk loading, and exports consistent while others write."""

from __future__ import annotations

import csv

import networkx as nx
import pytest

from symkd.graphs import triples as knowledge
from symkd.errors import UserError
from symkd.graphs import build as build_mod
from symkd.graphs import export, open_store
from symkd.graphs.bulk import bulk_add_triples
from symkd.store.db import Store
from tests.test_graphs import make_kg_db


@pytest.fixture
def kg_db(tmp_path):
    return make_kg_db(tmp_path / "kg.db")


def test_bulk_add_triples_matches_add_triples(tmp_path):
    rows = [{"head": f"PersonX does thing {i % 9}", "relation": ["xNeed", "xWant", "AtLocation"][i % 3], "tail": f"Tail {i % 13}.",
             "run_id": "r", "sample": i, "logprob_sum": -0.5 * i} for i in range(200)]
    rows.append({**rows[0], "tail": "tail 0", "sample": 999})  # same triple after normalisation: ignored
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        assert knowledge.add_triples(a, rows) == bulk_add_triples(b, rows) == 117
        assert bulk_add_triples(b, rows) == 0  # insert-or-ignore on a rerun
        cols = "id, head, relation, tail, head_id, source, round, run_id, sample, logprob_sum"
        assert a.query(f"select {cols} from triples order by id") == b.query(f"select {cols} from triples order by id")
        indexes = "select name, sql from sqlite_master where type = 'index' and tbl_name = 'triples' order by name"
        assert a.query(indexes) == b.query(indexes)
        with pytest.raises(UserError, match="triple 1: unknown field 'colour'"):
            bulk_add_triples(b, [{"head": "x", "relation": "xNeed", "tail": "y", "colour": "red"}])
        with pytest.raises(UserError, match="triple 2: field 'tail' must be a string"):
            bulk_add_triples(b, [{"head": "x", "relation": "xNeed", "tail": "y"}, {"head": "x", "relation": "xNeed"}])
        assert b.scalar("select count(*) from triples") == 117 and not b.conn.in_transaction  # nothing half-loaded
        with b.transaction():  # inside the caller's transaction it joins it
            assert bulk_add_triples(b, [{"head": "x", "relation": "xNeed", "tail": "y"}]) == 1
        assert a.scalar("select count(*) from triples") + 1 == b.scalar("select count(*) from triples")


@pytest.mark.parametrize("fmt", ["graphml", "neo4j"])
def test_writer_between_passes_does_not_split_the_export(kg_db, tmp_path, monkeypatch, fmt):
    original = build_mod.TripleSource.node_table

    def node_table_then_write(self, progress=False):
        table = original(self, progress)
        with Store(kg_db) as other:  # another process adds a triple with a new tail meanwhile
            knowledge.add_triples(other, [{"head": "PersonX goes jogging", "relation": "xWant", "tail": "a shower"}])
        return table

    monkeypatch.setattr(build_mod.TripleSource, "node_table", node_table_then_write)
    out = tmp_path / ("neo" if fmt == "neo4j" else "kg.graphml")
    with open_store(kg_db) as store:
        summary = export(store, fmt, out)
    assert summary["edges"] == 7  # the snapshot taken before the node pass
    if fmt == "graphml":
        back = nx.read_graphml(out, edge_key_type=str, force_multigraph=True)
        assert back.number_of_nodes() == 8 and back.number_of_edges() == 7
    else:
        ids = {row[0] for row in csv.reader((out / "nodes.csv").read_text().splitlines())}
        rels = list(csv.reader((out / "relationships.csv").read_text().splitlines()))[1:]
        assert len(rels) == 7 and all(r[0] in ids and r[1] in ids for r in rels)
    with open_store(kg_db) as store:
        assert export(store, "json", tmp_path / "after.json")["edges"] == 8
