"""The store for Datasette and sqlite-utils: foreign keys, views, the scoring run of critic
scores, the in-place upgrade of an old store, and Datasette itself reading the metadata."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from symkd.critics.base import apply_critic
from symkd.critics.cascade import apply_cascade
from symkd.graphs.triples import add_events, add_triples, event_id
from symkd.pipelines.agents import tables as agent_tables
from symkd.pipelines.agents.verifier import VerifierCritic
from symkd.pipelines.commonsense.critics.rules import RulesCritic
from symkd.pipelines.strategies import library
from symkd.pipelines.strategies import tables as strategy_tables
from symkd.store import Store
from symkd.store.datasette import table_docs
from tests.procs import run_cli

HEAD = "PersonX goes jogging"
TAILS = ["athletic", "tired", "http://x.y"]  # the rules critic drops the address


def _fk(store: Store, table: str) -> set[tuple[str, str, str]]:
    return {(r["from"], r["table"], r["to"]) for r in store.query(f"select * from pragma_foreign_key_list('{table}')")}


@pytest.fixture
def built(tmp_path, fake_openai) -> Path:
    """A store made through the real code paths: a teacher run, events and triples from its
    answers, the rules critic; trajectories verified by the verifier; two strategies."""
    import symkd

    db = tmp_path / "demo.db"
    requests = [symkd.Request(id=f"q{i}", prompt=f"line {i}") for i in range(3)]
    result = symkd.generate("openai:fake", requests, db, base_url=fake_openai.base_url, progress=False)
    keys = list(result.keys().values())
    with Store(db) as store:
        add_events(store, [{"text": HEAD, "source": "generated", "run_id": result.run_id, "response_key": keys[0]}])
        add_triples(store, [{"head": HEAD, "relation": "xAttr", "tail": tail, "run_id": result.run_id,
                             "response_key": keys[1], "sample": i} for i, tail in enumerate(TAILS)])  # fmt: skip
        apply_cascade(store, [RulesCritic()])
        rows = [{"id": f"t{i}", "source": "teacher", "task_id": f"task{i}", "sample": 0, "question": "1+1?",
                 "reference": "2", "final_answer": answer, "correct": int(answer == "2"), "n_steps": 1,
                 "hit_step_limit": 0, "parse_errors": 0, "run_ids": [result.run_id], "response_keys": [keys[2]]}
                for i, answer in enumerate(["2", "3"])]  # fmt: skip
        agent_tables.write_trajectories(store, rows)
        apply_critic(store, VerifierCritic(), where="id in ('t0', 't1')")
        strategy_tables.ensure(store)
        for sid, status in (("s1", "accepted"), ("s2", "rejected")):
            strategy = library.Strategy(sid, f"strategy {sid}", status=status, learn_id="L", round=0, response_key=keys[0])
            library.insert(store, strategy, None, "teacher")
    return db


def test_foreign_keys_are_declared_and_hold(built):
    with Store(built) as store:
        assert {("run_id", "runs", "id"), ("response_key", "responses", "key")} <= _fk(store, "events")
        assert {("run_id", "runs", "id"), ("response_key", "responses", "key"), ("head_id", "events", "id")} <= _fk(store, "triples")
        assert {("run_id", "runs", "id"), ("triple_id", "triples", "id"), ("event_id", "events", "id"),
                ("trajectory_id", "trajectories", "id")} <= _fk(store, "critic_scores")  # fmt: skip
        assert _fk(store, "trajectory_runs") == {("trajectory_id", "trajectories", "id"), ("run_id", "runs", "id")}
        assert ("response_key", "responses", "key") in _fk(store, "strategies")
        assert ("response_key", "responses", "key") in _fk(store, "strategy_scenarios")
        assert store.query("pragma foreign_key_check") == []
        # the generated link columns point at the item scored
        links = store.query("select item_table, triple_id, trajectory_id from critic_scores order by rowid")
        assert {(r["item_table"], r["triple_id"] is not None, r["trajectory_id"] is not None) for r in links} == {
            ("triples", True, False), ("trajectories", False, True)}
    assert set(sqlite_utils.Database(built)["triples"].foreign_keys) >= {
        sqlite_utils.db.ForeignKey("triples", "run_id", "runs", "id")}  # sqlite-utils sees them too


def test_critic_scores_record_the_run_that_scored(built):
    with Store(built) as store:
        assert store.scalar("select count(*) from critic_scores where run_id is null") == 0
        runs = store.query("select r.kind, r.teacher, r.status, count(*) as n from critic_scores s "
                           "join runs r on r.id = s.run_id group by r.id order by r.teacher")  # fmt: skip
        assert [(r["kind"], r["teacher"], r["status"], r["n"]) for r in runs] == [
            ("critic", "critic:rules", "done", 3), ("critic", "critic:verifier", "done", 2)]
        before = store.scalar("select count(*) from runs")
        assert apply_cascade(store, [RulesCritic()])["this_pass"][0]["scored"] == 0
        assert store.scalar("select count(*) from runs") == before  # nothing to score: no run opened
        apply_critic(store, RulesCritic(), rescore=True)
        rescored = store.query("select attempts from runs where teacher = 'critic:rules' order by created_at")
        assert len(rescored) == 2  # another scope (rescore) is another run


def test_views_show_kept_triples_verified_trajectories_and_accepted_strategies(built):
    with Store(built) as store:
        kept = store.query("select * from kept_triples order by tail")
        assert [r["tail"] for r in kept] == ["athletic", "tired"]
        assert json.loads(kept[0]["scores"])[0]["critic"] == "rules" and kept[0]["critics"] == 1
        verified = store.query("select id, verifier_run from verified_trajectories")
        assert [r["id"] for r in verified] == ["t0"] and verified[0]["verifier_run"]
        assert [r["id"] for r in store.query("select id from accepted_strategies")] == ["s1"]
        assert store.query("select run_id from trajectory_runs") == [{"run_id": store.scalar("select run_id from triples limit 1")}] * 2


FIXTURES = Path(__file__).parent / "fixtures"


def _old_store(path: Path) -> None:
    """A store as symkd wrote it before: core v4 (the schema its migrations made then, commonsense
    tables included, captured in a fixture), agents v2, strategies v1, with rows (orphans too)."""
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "store_v4_release.sql").read_text(encoding="utf-8"))
    db = sqlite_utils.Database(path)
    for migration in agent_tables.MIGRATIONS[:2]:
        migration(db)
    strategy_tables.MIGRATIONS[0](db)
    db["meta"].insert_all([{"key": "schema_version:agents", "value": "2"},
                           {"key": "schema_version:strategies", "value": "1"}])  # fmt: skip
    db["runs"].insert({"id": "r1", "kind": "generate", "status": "done"})
    db["events"].insert({"id": event_id(HEAD), "text": HEAD, "run_id": "r1", "status": "kept"})
    db["triples"].insert_all([
        {"id": "a", "head": HEAD, "relation": "xAttr", "tail": "fit", "head_id": event_id(HEAD), "run_id": "r1"},
        {"id": "b", "head": "PersonX naps", "relation": "xAttr", "tail": "sleepy", "head_id": "nohead", "run_id": "gone"},
    ])  # fmt: skip
    db["critic_scores"].insert({"item_table": "triples", "item_id": "a", "critic": "rules", "critic_version": "1",
                                "score": 1.0, "decision": "keep"})  # fmt: skip
    db["trajectories"].insert({"id": "t", "source": "gold-rationales", "task_id": "1", "run_ids": '["r1"]'})
    db.execute("insert into strategies (id, text, status, created_at, updated_at) values ('s', 'x', 'accepted', 'now', 'now')")
    db.execute("insert into strategy_versions values ('s', 1, 'x', '[]', 'accepted', 'teacher', '', 'now')")
    db.conn.commit()
    db.close()


def _dump(path: Path, table: str, columns: str = "*") -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"select {columns} from {table} order by rowid").fetchall()


def test_an_old_store_upgrades_in_place_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    before = {t: _dump(path, t) for t in ("runs", "events", "triples", "critic_scores", "trajectories", "strategies",
                                          "strategy_versions")}  # fmt: skip
    with Store(path) as store:
        agent_tables.ensure(store)
        strategy_tables.ensure(store)
        keys = ("schema_version", "schema_version:commonsense", "schema_version:agents", "schema_version:strategies")
        assert [store.meta(k) for k in keys] == ["5", "1", "3", "2"]
        assert ("head_id", "events", "id") in _fk(store, "triples")
        # orphans are kept as they were (tolerated, not nulled) and foreign_key_check lists them
        orphans = {(r["table"], r["parent"]) for r in store.query("pragma foreign_key_check")}
        assert orphans == {("triples", "runs"), ("triples", "events")}
        assert store.query("select * from trajectory_runs") == [{"trajectory_id": "t", "run_id": "r1"}]
        assert [r["id"] for r in store.query("select id from kept_triples")] == ["a"]
        indexes = {r["name"] for r in store.query("select name from sqlite_master where type = 'index'")}
        assert {"idx_triples_head_relation", "idx_critic_scores_critic_decision", "strategies_status"} <= indexes
    for table, rows in before.items():
        width = len(rows[0])  # the columns the old table had, in the same order
        assert [row[:width] for row in _dump(path, table)] == rows, table


def test_a_failed_upgrade_leaves_the_old_store_untouched(tmp_path, monkeypatch):
    from symkd.pipelines.commonsense import tables as commonsense_tables

    path = tmp_path / "old.db"
    _old_store(path)
    before = _dump(path, "triples")

    def boom(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(commonsense_tables, "create_view", boom)  # fails after the three rebuilds (core and commonsense)
    with pytest.raises(Exception, match="disk I/O error"):
        Store(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("select value from meta where key = 'schema_version'").fetchone() == ("4",)
        assert conn.execute("pragma foreign_key_list(triples)").fetchall() == []
    assert _dump(path, "triples") == before


def test_every_column_is_described_where_its_table_is_defined(built):
    docs = table_docs()
    with Store(built) as store:
        names = [r["name"] for r in store.query("select name from sqlite_master where type in ('table', 'view') "
                                                "and name not like 'corpus_fts_%' and name not like 'sqlite_%'")]  # fmt: skip
        for name in names:
            assert name in docs, f"{name}: no description"
            columns = {r["name"] for r in store.query(f"select name from pragma_table_xinfo('{name}')")}
            if name != "corpus_fts":  # its columns are the FTS index's
                assert columns <= set(docs[name].columns), f"{name}: {sorted(columns - set(docs[name].columns))} undescribed"
            assert set(docs[name].columns) <= columns, f"{name}: describes columns it does not have"


def test_datasette_metadata_command_and_datasette_shows_it(built, capsys, tmp_path):
    out = tmp_path / "metadata.json"
    code, stdout, _ = run_cli(capsys, "datasette-metadata", str(built), "--out", str(out))
    assert code == 0 and "datasette" in stdout
    document = json.loads(out.read_text())
    tables = document["databases"]["demo"]["tables"]
    assert tables["triples"]["columns"]["run_id"] == "the run that generated it"
    assert tables["runs"]["label_column"] == "kind" and "kept_triples" in tables

    from datasette.app import Datasette

    async def fetch() -> tuple:
        ds = Datasette(files=[str(built)], metadata=document)
        page = await ds.client.get("/demo/triples")
        database = (await ds.client.get("/demo.json")).json()
        view = (await ds.client.get("/demo/kept_triples.json?_shape=array")).json()
        labelled = (await ds.client.get("/demo/critic_scores.json?_shape=array&_labels=on&item_table=triples")).json()
        return page, database, view, labelled

    page, database, view, labelled = asyncio.run(fetch())
    assert page.status_code == 200 and 'data-column-description="the run that generated it"' in page.text
    assert {"kept_triples", "verified_trajectories", "accepted_strategies"} <= {v["name"] for v in database["views"]}
    triples = next(t for t in database["tables"] if t["name"] == "triples")
    assert {"other_table": "runs", "column": "run_id", "other_column": "id"} in triples["foreign_keys"]["outgoing"]
    assert sorted(r["tail"] for r in view) == ["athletic", "tired"]
    assert labelled[0]["run_id"]["label"] == "critic" and labelled[0]["triple_id"]["label"] in TAILS


def test_datasette_metadata_refuses_a_missing_store_in_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "datasette-metadata", str(tmp_path / "none.db"))
    assert code == 2 and "no such database" in err and "Traceback" not in err
