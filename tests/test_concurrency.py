"""Two processes on one job: nothing paid twice, a failure never replaces an ok answer.

Every test runs the real ``symkd generate`` in subprocesses against the loopback fault server
and counts, at the server, how often each input was sent.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from symkd.store import Store
from symkd.teachers.registry import cache_identity
from symkd.requests_file import read_requests
from symkd.testing.launch import start_fake_server
from tests.procs import generate_args, start, write_prompts


def _summary(proc) -> dict:
    try:
        out, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        raise
    assert "Traceback" not in err, err
    assert out.strip(), f"no summary (exit {proc.returncode}): {err}"
    return {"rc": proc.returncode, **json.loads(out.strip().splitlines()[-1])}


def _statuses(db) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("select status, count(*) from responses group by status").fetchall())
    finally:
        conn.close()


def test_two_identical_runs_split_the_job_and_their_summaries_add_up(tmp_path):
    n = 100  # 200 ms a request, 4 in flight: about 5 s of work for one process alone
    prompts, db = write_prompts(tmp_path / "p.jsonl", n), tmp_path / "r.db"
    with start_fake_server("--latency-ms", "200") as server:
        args = generate_args(server.base_url, prompts, db, "-c", "4", "--json")
        first, second = start(*args), start(*args)
        a, b = _summary(first), _summary(second)
        sent = server.stats()["by_input"]
    assert a["rc"] == 0 and b["rc"] == 0
    assert a["done"] + b["done"] == n, (a, b)  # each key answered by exactly one of them
    for s in (a, b):
        assert s["total"] == n and s["done"] + s["cached"] == n and s["failed"] == 0
    assert min(a["done"], b["done"]) > 0, ("both processes must have taken part of the work", a, b)
    assert len(sent) == n and max(sent.values()) == 1, "a key was sent twice"
    assert _statuses(db) == {"ok": n}
    with Store(db) as store:
        assert store.scalar("select count(*) from claims") == 0  # every claim released


def test_a_failure_never_replaces_an_ok_answer_in_a_race(tmp_path):
    # One 300 ms server; B gives up after 0.2 s (--timeout, no retries), A waits for answers.
    # Without claims B's late failures landed on A's answers; now A takes over what B failed.
    n = 12
    prompts, db = write_prompts(tmp_path / "p.jsonl", n), tmp_path / "r.db"
    with start_fake_server("--latency-ms", "300") as server:
        a = start(*generate_args(server.base_url, prompts, db, "-c", "12", "--json"))
        b = start(*generate_args(server.base_url, prompts, db, "-c", "2", "--timeout", "0.2", "--max-retries", "0", "--json"))
        sa, sb = _summary(a), _summary(b)
    assert sa["rc"] == 0 and sa["failed"] == 0 and sa["done"] + sa["cached"] == n, sa
    assert sb["done"] == 0 and sb["failed"] + sb["cached"] == n, sb
    assert _statuses(db) == {"ok": n}, "a failed answer replaced an ok one"


def test_a_lease_held_elsewhere_is_taken_over_once_it_runs_out(tmp_path, fake_openai):
    n = 6
    prompts, db = write_prompts(tmp_path / "p.jsonl", n), tmp_path / "r.db"
    identity = cache_identity("openai:fake", base_url=fake_openai.base_url)
    keys = [r.cache_key(*identity) for r in read_requests(prompts)]
    lease_ends = time.time() + 2.0
    with Store(db) as store, store.transaction():
        store.conn.executemany(
            "insert into claims (key, owner, host, pid, run_id, expires_at) values (?, 'far:1:x', 'far', 1, 'x', ?)",
            [(k, lease_ends) for k in keys[:4]],
        )
    proc = start(*generate_args(fake_openai.base_url, prompts, db, "--json"))
    time.sleep(max(0.0, lease_ends - 0.3 - time.time()))
    sent_before_expiry = fake_openai.stats()["total"]
    summary = _summary(proc)
    assert sent_before_expiry <= n - 4, "keys leased by a live owner elsewhere were sent before the lease ran out"
    assert summary["rc"] == 0 and (summary["done"], summary["failed"]) == (n, 0)
    assert sorted(fake_openai.stats()["by_input"].values()) == [1] * n


@pytest.mark.parametrize("first, second", [("failed", "ok"), ("ok", "failed"), ("ok", "ok2")])
def test_upsert_keeps_an_ok_answer(db_path, first, second):
    from symkd.store.cache import request_row, write_responses, response_row
    from symkd.teachers.messages import Completion, Request, Response

    def answer(kind: str) -> Response:
        return Response(error="HTTP 500") if kind == "failed" else Response(completions=[Completion(text=kind)])

    with Store(db_path) as store:
        with store.transaction() as tx:
            tx["requests"].insert(request_row(Request(id="a", prompt="x"), "k", "b", "m"), pk="key")
        write_responses(store, [response_row("k", answer(first))])
        write_responses(store, [response_row("k", answer(second))])
        row = store.query("select status, text from responses")[0]
    assert row == {"status": "ok", "text": "ok"}  # a failure never lands on an ok; the first ok stays


def test_two_batching_teachers_on_one_job_neither_waits_for_ever(db_path):
    """A batching (local) teacher fills a batch only with keys it can claim now: holding claimed
    keys in a half-full batch while waiting for the other's would leave both waiting."""
    import asyncio

    from symkd.generation import agenerate
    from symkd.teachers.base import LocalTeacher
    from symkd.teachers.messages import Completion, Response

    class Batching(LocalTeacher):
        backend = "batching"

        def __init__(self) -> None:
            super().__init__("m", batch_size=5)  # claims come 8 at a time: batches straddle them
            self.sent: list[str] = []

        def generate_batch(self, batch):
            time.sleep(0.05)
            self.sent += [r.id for r in batch]
            return [Response(completions=[Completion(text=r.id)]) for r in batch]

    requests = [r for r in read_requests(write_prompts(db_path.with_suffix(".jsonl"), 16))]
    a, b = Batching(), Batching()

    async def both():
        return await asyncio.wait_for(asyncio.gather(
            agenerate(a, requests, db_path, progress=False), agenerate(b, requests, db_path, progress=False)), 30)

    ra, rb = asyncio.run(both())
    assert sorted(a.sent + b.sent) == sorted(r.id for r in requests)  # each sent once
    assert ra.done + rb.done == 16 and ra.done + ra.cached == 16 and rb.done + rb.cached == 16
