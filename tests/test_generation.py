"""Cached, resumable generation through the real OpenAI backend against the loopback server."""

from __future__ import annotations

import pytest

import symkd
from symkd.errors import UserError
from symkd.teachers.messages import GenerationParams, Message, Request


def _reqs(n: int, **params) -> list[Request]:
    return [
        Request(id=f"q{i}", messages=[Message(role="user", content=f"question {i}")], params=GenerationParams(**params))
        for i in range(n)
    ]


def _teacher(server, **kw):
    return symkd.load_teacher("openai:fake", base_url=server.base_url, backoff_base=0.01, **kw)


def test_rerun_is_answered_from_cache(fake_openai, db_path):
    first = symkd.generate(_teacher(fake_openai), _reqs(12), db_path, progress=False)
    assert (first.total, first.done, first.cached, first.failed) == (12, 12, 0, 0)
    sent = fake_openai.stats()["total"]
    second = symkd.generate(_teacher(fake_openai), _reqs(12), db_path, progress=False)
    assert (second.done, second.cached) == (0, 12)
    assert second.run_id == first.run_id  # same job -> same run, resumed not duplicated
    assert fake_openai.stats()["total"] == sent  # nothing sent again
    rows = symkd.run_results(db_path, first.run_id)
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(12)]
    assert all(r["status"] == "ok" and r["completions"][0] == f"echo 0: question {r['id'][1:]}" for r in rows)
    runs = symkd.list_runs(db_path)
    assert len(runs) == 1 and runs[0]["attempts"] == 2 and runs[0]["ok"] == 12 and runs[0]["status"] == "done"


def test_changed_params_miss_the_cache_and_identical_items_are_sent_once(fake_openai, db_path):
    symkd.generate(_teacher(fake_openai), _reqs(3, temperature=0.5), db_path, progress=False)
    other = symkd.generate(_teacher(fake_openai), _reqs(3, temperature=0.7), db_path, progress=False)
    assert other.done == 3 and other.cached == 0
    same = [Request(id=f"dup{i}", prompt="same prompt") for i in range(4)]
    summary = symkd.generate(_teacher(fake_openai), same, db_path, progress=False)
    assert summary.done == 4
    assert fake_openai.stats()["total"] == 3 + 3 + 1
    # a new sample of the same input is a different key
    again = [Request(id="s1", prompt="same prompt", sample_index=1)]
    assert symkd.generate(_teacher(fake_openai), again, db_path, progress=False).done == 1


def test_a_recorded_rerun_rewrites_no_rows_and_records_only_what_is_missing(fake_openai, db_path):
    """Request and item rows already stored are left as they are (insert-or-ignore); a rerun
    records only the missing ones: a request row deleted since, items under new ids."""
    from symkd.store.db import Store

    def rows() -> tuple[list[dict], list[dict]]:
        with Store(db_path) as store:
            return (store.query("select * from requests order by key"),
                    store.query("select rowid, * from run_items order by rowid"))  # fmt: skip

    first = symkd.generate(_teacher(fake_openai), _reqs(6), db_path, progress=False)
    requests, items = rows()
    assert len(requests) == 6 and [i["item_id"] for i in items] == [f"q{i}" for i in range(6)]
    again = symkd.generate(_teacher(fake_openai), _reqs(6), db_path, progress=False)
    assert (again.run_id, again.cached) == (first.run_id, 6)
    assert rows() == (requests, items)
    with Store(db_path) as store, store.transaction():
        store.conn.execute("delete from requests where key = ?", (items[2]["request_key"],))
    renamed = _reqs(6)
    for r in renamed:
        r.id = "r" + r.id[1:]
    third = symkd.generate(_teacher(fake_openai), renamed, db_path, progress=False)
    assert third.run_id == first.run_id  # same keys: the same run, with the new ids added to it
    requests_after, items_after = rows()
    assert [r["key"] for r in requests_after] == [r["key"] for r in requests]
    assert [r for r in requests_after if r["key"] != items[2]["request_key"]] == [
        r for r in requests if r["key"] != items[2]["request_key"]]
    assert items_after[:6] == items
    assert [i["item_id"] for i in items_after[6:]] == [f"r{i}" for i in range(6)]
    assert [i["request_key"] for i in items_after[6:]] == [i["request_key"] for i in items]


def test_duplicate_item_ids_are_refused(fake_openai, db_path):
    reqs = _reqs(2)
    reqs[1].id = reqs[0].id
    with pytest.raises(UserError, match="duplicate item id"):
        symkd.generate(_teacher(fake_openai), reqs, db_path, progress=False)


def test_template_provenance_is_recorded(fake_openai, db_path):
    tpl = symkd.get_template("quickstart/explain")
    reqs = [tpl.request(f"c{i}", {"concept": c}) for i, c in enumerate(["wind", "ice"])]
    summary = symkd.generate(_teacher(fake_openai), reqs, db_path, progress=False)
    with symkd.open_store(db_path) as store:
        run = store.query("select templates, config from runs")[0]
        assert '"id":"quickstart/explain"' in run["templates"] and '"version":"1"' in run["templates"]
        items = store.query("select template_id, template_version from run_items where run_id = ?", (summary.run_id,))
        assert {(i["template_id"], i["template_version"]) for i in items} == {("quickstart/explain", "1")}


def test_unknown_teacher_spec_is_a_user_error():
    with pytest.raises(UserError, match="unknown teacher spec"):
        symkd.load_teacher("nosuch:model")
    with pytest.raises(UserError, match="names no model"):
        symkd.load_teacher("openai:")
