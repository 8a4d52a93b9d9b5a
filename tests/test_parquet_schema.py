"""Parquet exports keep their column types whatever the data, so the files of two runs concatenate
(checked with polars, which refuses a column typed null in one file and float in the other), and
say in their key-value metadata which symkd wrote them and what was selected."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

import symkd
from symkd.cli import main
from symkd.errors import UserError
from symkd.graphs.triples import add_triples, triple_id
from symkd.store.db import Store
from tests.test_graphs import _scores, make_kg_db

pl = pytest.importorskip("polars")

TRIPLES = [("PersonX bakes bread", "xNeed", "flour"), ("PersonX bakes bread", "xReact", "proud")]


def _db_without_logprobs(path):
    """A run whose backend gave no log-probabilities; scored by the same critics as make_kg_db."""
    with Store(path) as store:
        add_triples(store, [{"head": h, "relation": r, "tail": t, "run_id": "run2"} for h, r, t in TRIPLES])
        ids = [triple_id(h, r, t) for h, r, t in TRIPLES]
        rows = _scores(ids, "rules", "1", [1, 0]) + _scores(ids, "classifier", "2", [0.9, 0.2])
        with store.transaction() as db:
            db["critic_scores"].insert_all(rows, pk=("item_table", "item_id", "critic", "critic_version"))
    return path


def _export(db, out, *extra):
    assert main(["export", "--db", str(db), "--format", "parquet", "--out", str(out), "-q", *extra]) is None
    return out


@pytest.fixture
def two_runs(tmp_path, capsys):
    with_lp = _export(make_kg_db(tmp_path / "a.db"), tmp_path / "a.parquet", "--critic", "rules")
    without = _export(_db_without_logprobs(tmp_path / "b.db"), tmp_path / "b.parquet", "--critic", "rules")
    capsys.readouterr()
    return with_lp, without


def test_two_runs_concatenate_with_fixed_types(two_runs):
    a, b = (pl.read_parquet(p) for p in two_runs)
    assert a.schema == b.schema
    both = pl.concat([a, b])
    assert both.height == a.height + b.height and b.height == 1  # rules kept "flour" only
    types = both.schema
    assert types["logprob_sum"] == pl.Float64 and types["created_at"] == pl.Datetime("us", "UTC")
    assert types["round"] == pl.Int64 and types["sample"] == pl.Int64 and types["score_rules"] == pl.Float64
    assert types["teacher"] == pl.String and types["decision_classifier"] == pl.String
    assert b["logprob_sum"].to_list() == [None] and set(a["logprob_sum"].to_list()) == {-1.25}
    assert both["decision_rules"].to_list() == ["keep"] * both.height
    scanned = pl.read_parquet([two_runs[1], two_runs[0]])  # one read of both files: the first file's types rule
    assert scanned.schema == types and scanned.height == both.height


def test_created_at_is_the_stored_time(two_runs):
    frame = pl.read_parquet(two_runs[1])
    with Store(two_runs[1].with_suffix(".db"), create=False, readonly=True) as store:
        stored = store.scalar("select created_at from triples where tail = 'flour'")
    assert frame["created_at"][0] == datetime.fromisoformat(stored).astimezone(timezone.utc)


def test_metadata_names_symkd_and_the_selection(two_runs):
    meta = pl.read_parquet_metadata(two_runs[0])
    assert meta["symkd.version"] == symkd.__version__
    selection = json.loads(meta["symkd.selection"])
    assert selection["critics"] == ["rules"] and selection["min_score"] is None and selection["include_none"] is False
    assert "kept by rules" in selection["text"]
    assert json.loads(meta["symkd.critics"]) == {"classifier": "2", "rules": "1"}


def test_to_dataset_has_the_parquet_types(tmp_path):
    db = make_kg_db(tmp_path / "a.db")
    ds = symkd.to_dataset(db, critics=["rules"])
    assert ds.features["created_at"].dtype.startswith("timestamp[us") and ds.features["logprob_sum"].dtype == "float64"
    assert ds.features["score_classifier"].dtype == "float64"


def test_empty_selection_is_one_error_and_keeps_the_old_file(tmp_path):
    db = _db_without_logprobs(tmp_path / "b.db")
    out = tmp_path / "old.parquet"
    out.write_bytes(b"old")
    from symkd.graphs import Selection
    from symkd.pipelines.commonsense.datasets import write_parquet

    with Store(db, create=False, readonly=True) as store, pytest.raises(UserError, match="no triples match"):
        write_parquet(store, Selection(relations=("oEffect",)), out)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".old")] == []


def test_bad_created_at_is_one_error(tmp_path):
    db = _db_without_logprobs(tmp_path / "b.db")
    with Store(db) as store:
        store.conn.execute("update triples set created_at = 'yesterday'")
        store.conn.commit()
    with pytest.raises(UserError, match="created_at 'yesterday' is not an ISO 8601 time"):
        symkd.to_dataset(db)


# ---- strategies -----------------------------------------------------------------------------


def _library(path, *, full: bool):
    from symkd.pipelines.strategies.library import Strategy, insert, open_library

    store = open_library(path, create=True)
    if full:
        strategy = Strategy("s1", "When a price is discounted, subtract the discount.", tags=["percent"],
                            source_scenarios=["t:1"], evidence={"reason": "ok"}, round=1, teacher="smollm2")  # fmt: skip
        insert(store, strategy, np.ones(4, dtype=np.float32), editor="test")
    else:  # no tags, no embedding, no round or teacher: every optional column empty
        insert(store, Strategy("s2", "When in doubt, check the units."), None, editor="test")
    store.close()
    return path


def test_strategy_libraries_concatenate(tmp_path):
    from symkd.pipelines.strategies.export import export_library

    files = []
    for name, full in (("full", True), ("bare", False)):
        export_library(_library(tmp_path / f"{name}.db", full=full), "parquet", tmp_path / f"{name}.parquet")
        files.append(pl.read_parquet(tmp_path / f"{name}.parquet"))
    both = pl.concat(files)
    assert both["id"].to_list() == ["s1", "s2"]
    types = both.schema
    assert types["embedding"] == pl.List(pl.Float32) and types["tags"] == pl.List(pl.String)
    assert types["round"] == pl.Int64 and types["teacher"] == pl.String and types["created_at"] == pl.Datetime("us", "UTC")
    assert both["embedding"].to_list() == [[1.0] * 4, None] and both["tags"].to_list() == [["percent"], []]
    assert json.loads(both["evidence"][0]) == {"reason": "ok"}
    meta = pl.read_parquet_metadata(tmp_path / "bare.parquet")
    assert meta["symkd.version"] == symkd.__version__ and json.loads(meta["symkd.strategies"]) == 1
