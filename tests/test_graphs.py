"""Knowledge graph: structure, selection filters, every export format read back, stats, CLI errors."""

from __future__ import annotations

import csv
import json
import re
import sqlite3

import networkx as nx
import pytest
from networkx.readwrite import json_graph

from symkd.graphs import triples as knowledge
from symkd.errors import UserError
from symkd.graphs import NONE_NODE, Selection, TripleSource, build_graph, export, graph_stats, open_store
from symkd.graphs import build as build_mod
from symkd.store.db import Store
from tests.procs import run_cli

WEIRD = 'to say "hi", then | ride <it> & go'
TRIPLES = [  # head, relation, tail, rules score, classifier (v2) score
    ("PersonX goes jogging", "xNeed", "to buy running shoes", 1, 0.9),
    ("PersonX goes jogging", "xReact", "tired", 1, 0.8),
    ("PersonX buys a bike", "xReact", "Tired.", 1, 0.4),  # same tail node as "tired"
    ("PersonX goes jogging", "isAfter", "PersonX wakes up", 1, 0.7),  # tail that is also a head
    ("bike", "AtLocation", "garage", 1, 0.95),
    ("bike", "ObjectUse", "none", 1, 0.6),
    ("PersonX goes jogging", "xAttr", "tired", 1, 0.55),  # parallel edge jogging -> tired
    ("PersonX buys a bike", "xWant", WEIRD, 0, 0.3),
]
IDS = [knowledge.triple_id(h, r, t) for h, r, t, _, _ in TRIPLES]
JOG, BIKE_BUY, BIKE, WAKE = (
    "e:" + knowledge.event_id(t) for t in ("PersonX goes jogging", "PersonX buys a bike", "bike", "PersonX wakes up")
)
TIRED = "t:" + knowledge.event_id("tired")




def _scores(ids, critic, version, scores, threshold=0.5):
    return [{"item_table": "triples", "item_id": i, "critic": critic, "critic_version": version, "score": float(s),
             "decision": "keep" if s >= threshold else "drop", "threshold": threshold} for i, s in zip(ids, scores)]


@pytest.fixture
def kg_db(tmp_path):
    return make_kg_db(tmp_path / "kg.db")


def make_kg_db(path):
    """A small store by hand: 4 events, the 8 TRIPLES, scores from rules v1 and classifier v1+v2."""
    with Store(path) as store:
        knowledge.add_events(store, [
            {"text": "PersonX goes jogging", "source": "seed"},
            {"text": "PersonX buys a bike", "source": "generated"},
            {"text": "bike", "kind": "entity", "source": "seed"},
            {"text": "PersonX wakes up", "source": "seed"},
        ])
        knowledge.add_triples(store, [
            {"head": h, "relation": r, "tail": t, "run_id": "run1", "template_id": "tpl", "template_version": "2",
             "response_key": "rk", "sample": i, "logprob_sum": -1.25}
            for i, (h, r, t, _, _) in enumerate(TRIPLES)
        ])
        rows = _scores(IDS, "rules", "1", [t[3] for t in TRIPLES])
        rows += _scores(IDS, "classifier", "2", [t[4] for t in TRIPLES])
        rows += _scores(IDS, "classifier", "1", [0.01] * len(IDS))  # older version: ignored
        with store.transaction() as db:
            db["critic_scores"].insert_all(rows, pk=("item_table", "item_id", "critic", "critic_version"))
    return path


def _graph(path, **sel):
    with open_store(path) as store:
        return build_graph(store, Selection(**sel))


def test_graph_nodes_edges_and_attributes(kg_db):
    g = _graph(kg_db)
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == {JOG, BIKE_BUY, BIKE, WAKE, TIRED, "t:" + knowledge.event_id("to buy running shoes"),
                            "t:" + knowledge.event_id("garage"), "t:" + knowledge.event_id(WEIRD)}
    assert g.number_of_edges() == 7 and set(k for _, _, k in g.edges(keys=True)) == set(IDS) - {IDS[5]}
    # "tired" and "Tired." are one node with three incoming edges, two of them parallel from jogging
    assert g.in_degree(TIRED) == 3 and g.number_of_edges(JOG, TIRED) == 2
    assert g.nodes[TIRED] == {"label": "tired", "type": "inference", "groups": "social"}
    assert g.nodes[WAKE]["type"] == "event" and g.has_edge(JOG, WAKE, key=IDS[3])  # tail merged into the head node
    assert g.nodes[JOG] == {"label": "PersonX goes jogging", "type": "event", "groups": "social,event", "origin": "seed", "status": "kept"}
    assert g.nodes[BIKE]["type"] == "entity" and g.nodes[BIKE]["none_relations"] == "ObjectUse"
    edge = g.edges[JOG, TIRED, IDS[1]]
    assert edge == {
        "relation": "xReact", "group": "social", "score_classifier": 0.8, "decision_classifier": "keep",
        "score_rules": 1.0, "decision_rules": "keep", "origin": "teacher", "round": 0, "run_id": "run1",
        "template_id": "tpl", "template_version": "2", "response_key": "rk", "sample": 1, "logprob_sum": -1.25,
        "created_at": edge["created_at"],
    }
    assert all(v is not None and not isinstance(v, (dict, list)) for _, _, d in g.edges(data=True) for v in d.values())


def test_none_tails_excluded_by_default_and_included_on_request(kg_db):
    assert NONE_NODE not in _graph(kg_db)
    g = _graph(kg_db, include_none=True)
    assert g.nodes[NONE_NODE] == {"label": "none", "type": "none", "groups": "physical"}
    assert g.has_edge(BIKE, NONE_NODE, key=IDS[5]) and "none_relations" not in g.nodes[BIKE]


@pytest.mark.parametrize(
    "sel, expected",
    [
        ({}, set(range(8))),
        ({"critics": ("rules",)}, set(range(7))),
        ({"critics": ("classifier",)}, {0, 1, 3, 4, 5, 6}),
        ({"critics": ("classifier",), "min_score": 0.75}, {0, 1, 4}),
        ({"critics": ("rules", "classifier"), "min_score": 0.5}, {0, 1, 3, 4, 5, 6}),
        ({"relations": ("xReact", "xWant")}, {1, 2, 7}),
    ],
)
def test_selection_is_curated_triples(kg_db, sel, expected):
    with open_store(kg_db) as store:
        curated = {r["id"] for r in knowledge.curated_triples(store, **sel)}
        src = TripleSource(store, Selection(include_none=True, **sel))
        streamed = {r["id"] for r in src.rows()}
        keys = {k for _, _, k, _ in src.edges()}
    assert streamed == curated == keys == {IDS[i] for i in expected}


def test_selection_errors(kg_db):
    with open_store(kg_db) as store:
        with pytest.raises(UserError, match="critic 'judge' has no scores.*classifier, rules"):
            TripleSource(store, Selection(critics=("judge",)))
        with pytest.raises(UserError, match="--min-score needs --critic"):
            TripleSource(store, Selection(min_score=0.5))
        with pytest.raises(UserError, match="unknown relation 'xneed' \\(did you mean xNeed"):
            TripleSource(store, Selection(relations=("xneed",)))


def _same(a: nx.MultiDiGraph, b: nx.MultiDiGraph, drop_edge=()) -> None:
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    ea = {k: (u, v, {x: y for x, y in d.items() if x not in drop_edge}) for u, v, k, d in a.edges(keys=True, data=True)}
    eb = {k: (u, v, {x: y for x, y in d.items() if x not in drop_edge}) for u, v, k, d in b.edges(keys=True, data=True)}
    assert ea == eb


@pytest.mark.parametrize("include_none", [False, True])
def test_graphml_streams_what_networkx_reads_back(kg_db, tmp_path, include_none):
    out = tmp_path / "kg.graphml"
    with open_store(kg_db) as store:
        summary = export(store, "graphml", out, Selection(include_none=include_none))
    g = _graph(kg_db, include_none=include_none)
    back = nx.read_graphml(out, edge_key_type=str, force_multigraph=True)
    _same(back, g)
    assert back.graph["selection"] == g.graph["selection"] and summary["edges"] == g.number_of_edges()
    # and networkx's own writer gives the same graph
    ref = tmp_path / "ref.graphml"
    nx.write_graphml(g, ref)
    _same(nx.read_graphml(ref, edge_key_type=str, force_multigraph=True), back)


def test_gexf_reads_back(kg_db, tmp_path):
    out = tmp_path / "kg.gexf"
    with open_store(kg_db) as store:
        export(store, "gexf", out)
    back = nx.read_gexf(out)
    g = _graph(kg_db)
    for u, v, k, d in back.edges(keys=True, data=True):
        assert d["id"] == k and d["label"] == d["relation"]
    _same(back, g, drop_edge=("id", "label"))


def test_xml_keeps_awkward_text(tmp_path):
    path = tmp_path / "odd.db"
    odd = 'a <b> & "c"\n\ttabbed\r and \x01 control'
    with Store(path) as store:
        knowledge.add_triples(store, [{"head": "PersonX says 'x' & <y>", "relation": "xWant", "tail": odd}])
    with open_store(path) as store:
        export(store, "graphml", tmp_path / "o.graphml")
        export(store, "gexf", tmp_path / "o.gexf")
    for g in (nx.read_graphml(tmp_path / "o.graphml", edge_key_type=str), nx.read_gexf(tmp_path / "o.gexf")):
        assert sorted(d["label"] for _, d in g.nodes(data=True)) == sorted(["PersonX says 'x' & <y>", odd.replace("\x01", "")])


def test_json_node_link(kg_db, tmp_path):
    out = tmp_path / "kg.json"
    with open_store(kg_db) as store:
        export(store, "json", out)
    data = json.loads(out.read_text())
    back = json_graph.node_link_graph(data, edges="edges")
    assert isinstance(back, nx.MultiDiGraph)
    _same(back, _graph(kg_db))
    assert back.edges[JOG, TIRED, IDS[1]]["origin"] == "teacher"


def test_tsv_is_atomic_format(kg_db, tmp_path):
    out = tmp_path / "kg.tsv"
    with open_store(kg_db) as store:
        summary = export(store, "tsv", out)
    lines = out.read_text(encoding="utf-8").splitlines()
    parsed = {}
    for line in lines:
        left, tails = line.split("\t")
        head, relation = left.rsplit(" @@ ", 1)
        parsed[head, relation] = tails.split("| ")
    assert parsed["bike", "ObjectUse"] == ["none"]  # none kept: ATOMIC marks inapplicable relations that way
    assert parsed["PersonX goes jogging", "xReact"] == ["tired"]
    assert parsed["PersonX buys a bike", "xWant"] == [WEIRD.replace("|", "/")]
    assert len(lines) == summary["lines"] == 8 and summary["triples"] == 8
    atomic = pytest.importorskip("symkd.pipelines.commonsense.atomic")
    read = atomic.read_atomic_tsv(out)
    assert {(x.head, x.relation): list(x.tails) for x in read} == parsed


def test_tsv_groups_tails_of_one_head_and_relation(tmp_path):
    path = tmp_path / "g.db"
    with Store(path) as store:
        knowledge.add_triples(store, [
            {"head": "PersonX eats", "relation": "xEffect", "tail": "gets full"},
            {"head": "PersonX runs", "relation": "xEffect", "tail": "sweats"},
            {"head": "PersonX eats", "relation": "xEffect", "tail": "burps"},
            {"head": "PersonX eats", "relation": "xNeed", "tail": "food"},
        ])
    with open_store(path) as store:
        export(store, "tsv", tmp_path / "g.tsv")
    assert sorted((tmp_path / "g.tsv").read_text().splitlines()) == [
        "PersonX eats @@ xEffect\tburps| gets full", "PersonX eats @@ xNeed\tfood", "PersonX runs @@ xEffect\tsweats"]


def test_neo4j_csvs(kg_db, tmp_path):
    out = tmp_path / "neo"
    with open_store(kg_db) as store:
        summary = export(store, "neo4j", out, Selection(critics=("rules",)))
    with open(out / "nodes.csv", newline="") as fh:
        nodes = list(csv.reader(fh))
    with open(out / "relationships.csv", newline="") as fh:
        rels = list(csv.reader(fh))
    assert nodes[0] == ["id:ID", "text", "type", "groups", "none_relations", "origin", "status", ":LABEL"]
    assert rels[0][:5] == [":START_ID", ":END_ID", ":TYPE", "id", "group"]
    assert {"score_rules:double", "decision_rules", "round:long", "logprob_sum:double"} <= set(rels[0])
    assert len(nodes) - 1 == summary["nodes"] == 7 and len(rels) - 1 == summary["edges"] == 6  # xWant dropped by rules
    ids = {row[0] for row in nodes[1:]}
    assert all(r[0] in ids and r[1] in ids for r in rels[1:])
    by_id = {row[0]: row for row in nodes[1:]}
    assert by_id[JOG][-1] == "Node;Event" and by_id[TIRED][-1] == "Node;Inference" and by_id[BIKE][4] == "ObjectUse"
    col = rels[0].index("score_rules:double")
    assert {r[3]: float(r[col]) for r in rels[1:]}[IDS[1]] == 1.0
    assert {r[2] for r in rels[1:]} == {"xNeed", "xReact", "isAfter", "AtLocation", "xAttr"}
    with open_store(kg_db) as store:
        export(store, "neo4j", out)  # everything: the tail with quotes and a comma is quoted CSV
    assert '\n' + f't:{knowledge.event_id(WEIRD)},"to say ""hi"", then | ride <it> & go",' in (out / "nodes.csv").read_text()



def test_html_preview_is_self_contained(kg_db, tmp_path):
    out = tmp_path / "kg.html"
    with open_store(kg_db) as store:
        summary = export(store, "html", out)
    page = out.read_text(encoding="utf-8")
    for label in ("PersonX goes jogging", "tired", "garage", "PersonX wakes up"):
        assert f'"label": "{label}"' in page
    assert summary["nodes"] == 8 and summary["edges"] == 7 and "new vis.Network" in page
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)  # nothing fetched from the network
    payload = page.split("const data = ")[1].split(";\nconst options")[0]
    assert "<" not in payload and "\\u003cit>" in payload  # text cannot close the <script> element
    assert len(json.loads(payload)["nodes"]) == 8


def test_html_sample_keeps_top_hubs(tmp_path):
    path = tmp_path / "big.db"
    rows = [{"head": f"PersonX does thing {i}", "relation": "xEffect", "tail": f"result {i % 7}"} for i in range(60)]
    rows += [{"head": f"PersonX does thing {i}", "relation": "xWant", "tail": f"want {i}"} for i in range(60)]
    with Store(path) as store:
        knowledge.add_triples(store, rows)
    with open_store(path) as store:
        summary = export(store, "html", tmp_path / "s.html", sample=20)
    page = (tmp_path / "s.html").read_text()
    assert summary["graph_nodes"] == 127 and summary["nodes"] == 20
    # the two hubs come from the four "result k" nodes of degree 9 (the others have 8, heads 2)
    assert sum(f'"label": "result {k}"' in page for k in range(4)) >= 2
    assert sum(f'"label": "result {k}"' in page for k in range(4, 7)) == 0


def test_stats_counts_and_plot(capsys, kg_db, tmp_path):
    with open_store(kg_db) as store:
        stats = graph_stats(store, top=3)
    assert stats["triples"] == 8 and stats["none_triples"] == 1 and stats["nodes"] == 8 and stats["edges"] == 7
    assert stats["relations"]["xReact"] == {"triples": 2, "none": 0} and stats["relations"]["ObjectUse"] == {"triples": 1, "none": 1}
    assert list(stats["relations"])[:2] == ["xNeed", "xWant"]  # ATOMIC2020 order
    assert stats["critics"]["classifier"] == {"version": "2", "keep": 6, "drop": 2, "unscored": 0}
    assert stats["critics"]["rules"] == {"version": "1", "keep": 7, "drop": 1, "unscored": 0}
    assert [h["id"] for h in stats["hubs"]] == [JOG, TIRED, BIKE_BUY] and stats["hubs"][0]["degree"] == 4
    assert dict(map(tuple, stats["degree"]["histogram"])) == {1: 5, 2: 1, 3: 1, 4: 1}
    plot = tmp_path / "s.png"
    code, out, err = run_cli(capsys, "stats", "--db", str(kg_db), "--plot", str(plot), "--json", "-q")
    assert code == 0 and json.loads(out)["triples"] == 8, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run_cli(capsys, "stats", "--db", str(kg_db), "--critic", "rules", "-q")
    assert code == 0 and "7 triples (1 none)" in out and "PersonX goes jogging" in out


def test_cli_export_filters_change_output(capsys, kg_db, tmp_path):
    out = tmp_path / "kg.json"
    counts = {}
    for name, extra in {
        "all": [], "rules": ["--critic", "rules"], "score": ["--critic", "classifier", "--min-score", "0.75"],
        "rel": ["--relations", "xReact,physical"], "none": ["--include-none"],
    }.items():
        code, stdout, err = run_cli(capsys, "export", "--db", str(kg_db), "--format", "json", "--out", str(out), "-q", "--json", *extra)
        assert code == 0, err
        assert json.loads(stdout)["edges"] == len(json.loads(out.read_text())["edges"])
        counts[name] = json.loads(stdout)["edges"]
    assert counts == {"all": 7, "rules": 6, "score": 3, "rel": 3, "none": 8}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_db", "no such database"),
        ("not_a_db", "not a usable SQLite database"),
        ("unknown_format", "--format 'dot': unknown format; known: graphml, gexf"),
        ("unknown_relation", "unknown relation 'xFeels'"),
        ("unknown_critic", "critic 'judge' has no scores"),
        ("score_without_critic", "--min-score needs --critic"),
        ("missing_folder", "does not exist"),
        ("out_is_folder", "is a folder"),
    ],
)
def test_cli_errors_one_line_exit_2(capsys, kg_db, tmp_path, case, expected):
    db, fmt, out, extra = kg_db, "graphml", tmp_path / "kg.graphml", []
    if case == "missing_db":
        db = tmp_path / "absent.db"
    elif case == "not_a_db":
        db = tmp_path / "junk.db"
        db.write_text("not sqlite at all, just some text that is long enough to look like a header" * 3)
    elif case == "unknown_format":
        fmt = "dot"
    elif case == "unknown_relation":
        extra = ["--relations", "xNeed,xFeels"]
    elif case == "unknown_critic":
        extra = ["--critic", "judge"]
    elif case == "score_without_critic":
        extra = ["--min-score", "0.5"]
    elif case == "missing_folder":
        out = tmp_path / "nope" / "kg.graphml"
    elif case == "out_is_folder":
        out = tmp_path
    code, _, err = run_cli(capsys, "export", "--db", str(db), "--format", fmt, "--out", str(out), "-q", *extra)
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "absent.db").exists() and not (tmp_path / "kg.graphml").exists()
    code, _, err = run_cli(capsys, "stats", "--db", str(tmp_path / "absent.db"))
    assert code == 2 and "no such database" in err and not (tmp_path / "absent.db").exists()


@pytest.mark.parametrize("fmt", ["graphml", "gexf", "json", "neo4j", "tsv", "html"])
def test_failure_mid_export_leaves_no_file(kg_db, tmp_path, monkeypatch, fmt):
    def broken_rows(self, *, full=False, order=None):
        rows = original(self, full=full, order=order)
        if not full and order is None:  # the node pass works; the pass that writes fails
            yield from rows
            return
        yield next(rows)
        raise RuntimeError("disk on fire")

    original = build_mod.TripleSource.rows
    out = tmp_path / ("neo" if fmt == "neo4j" else f"kg.{fmt}")
    with open_store(kg_db) as store:
        if fmt != "neo4j":
            out.write_text("old export")
        monkeypatch.setattr(build_mod.TripleSource, "rows", broken_rows)
        with pytest.raises(RuntimeError, match="disk on fire"):
            export(store, fmt, out)
    leftovers = sorted(p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp"))
    assert leftovers == []
    if fmt == "neo4j":
        assert list(out.iterdir()) == []
    else:
        assert out.read_text() == "old export"


def test_export_never_writes_the_database(kg_db, tmp_path):
    before = kg_db.read_bytes()
    with open_store(kg_db) as store:
        export(store, "graphml", tmp_path / "x.graphml")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.conn.execute("delete from triples")
    assert kg_db.read_bytes() == before
