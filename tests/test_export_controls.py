"""TSV and Neo4j CSV exports carry no NUL or other control characters (readers choke on them)."""

from __future__ import annotations

import csv
import re

from symkd.graphs import export, open_store
from symkd.graphs import triples as knowledge
from symkd.store.db import Store

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
ODD_HEAD = "PersonX types \x00 a NUL\x07 and \x1b[31m colour"
ODD_TAIL = "to\tsave\x00 the file\r\nquickly\x0c and \x85 done"


def test_tsv_and_neo4j_drop_control_characters(tmp_path):
    path = tmp_path / "odd.db"
    with Store(path) as store:
        knowledge.add_triples(store, [{"head": ODD_HEAD, "relation": "xWant", "tail": ODD_TAIL}])
    with open_store(path) as store:
        export(store, "tsv", tmp_path / "o.tsv")
        export(store, "neo4j", tmp_path / "neo")
    (line,) = (tmp_path / "o.tsv").read_text().splitlines()
    head, tail = line.split("\t")
    assert head == "PersonX types  a NUL and [31m colour @@ xWant"
    assert tail == "to save the file quickly  and   done"  # breaks are spaces, controls gone
    for name in ("nodes.csv", "relationships.csv"):
        text = (tmp_path / "neo" / name).read_text()
        assert not _CONTROL.search(text.replace("\n", "")), name
        rows = list(csv.reader(text.splitlines()))
        assert len({len(r) for r in rows}) == 1  # every row has the header's columns
    labels = {row[1] for row in csv.reader((tmp_path / "neo" / "nodes.csv").read_text().splitlines()[1:])}
    assert "to save the file quickly  and   done" in labels
