"""The executor layer without Ray: options, the local default, replica identity, shard files,
which critics may leave the driver, and the session's executor hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symkd.critics.base import Critic, Verdict, apply_critic
from symkd.critics.dedupe import DedupeCritic
from symkd.critics.judge import LLMJudgeCritic
from symkd.errors import UserError
from symkd.scale import build_executor, executor_scope, shards
from symkd.scale.critics import parallel_safe, score_batches
from symkd.scale.executor import Executor
from symkd.scale.replicas import check_replicas, group_model
from symkd.session import TeacherSession
from symkd.store import cache
from symkd.store.db import Store
from symkd.teachers.base import Teacher
from symkd.teachers.messages import Completion, Request, Response
from symkd.teachers.urls import model_at

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "options, message",
    [
        ({"workers": 2}, r"--workers needs --executor ray"),
        ({"executor": "local", "replicas": "http://a/v1"}, r"--replicas needs --executor ray"),
        ({"executor": "spark"}, r"--executor: must be 'local' or 'ray'"),
        ({"executor": "ray", "workers": 0}, r"--workers: must be greater than or equal to 1"),
        ({"executor": "ray", "endpoint_group": "g"}, r"--endpoint-group names a list of --replicas"),
    ],
)
def test_bad_executor_options_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message):
        build_executor(options)


def test_ray_missing_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'symkd\[ray\]'"):
        build_executor({"executor": "ray"})


def test_the_local_default_imports_no_ray():
    code = (
        "import sys; from symkd.scale import build_executor; from symkd.session import TeacherSession; "
        "import symkd.critics.base, symkd.scale.critics; "
        "assert build_executor(None) is None and build_executor({'executor': 'local'}) is None; "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_replicas_share_one_identity_whatever_the_order():
    a, b = "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1/"
    assert group_model("m", [a, b], None) == group_model("m", [b, a], None) == "m@http://10.0.0.1:8000/v1|http://10.0.0.2:8000/v1"
    assert group_model("m", [a], None) == model_at("m", a)  # one server: the keys --base-url gives
    assert group_model("m", [a, b], "vllm-qwen") == group_model("m", [b], "vllm-qwen") == "m@group:vllm-qwen"
    with pytest.raises(UserError, match="only openai-compatible"):
        check_replicas("llamacpp", [a], {})
    with pytest.raises(UserError, match="replaces --base-url"):
        check_replicas("openai", [a], {"base_url": a})


def _request(i: int) -> Request:
    return Request(id=f"q{i}", prompt=f"prompt {i}")


def _seed_store(store: Store, count: int) -> list[str]:
    keys = [_request(i).cache_key("openai", "m") for i in range(count)]
    with store.transaction() as db:
        db["requests"].insert_all([cache.request_row(_request(i), k, "openai", "m") for i, k in enumerate(keys)], pk="key")
    return keys


def test_shard_merge_adds_only_missing_answers_and_is_idempotent(tmp_path):
    store = Store(tmp_path / "run.db")
    keys = _seed_store(store, 4)
    cache.write_responses(store, [cache.response_row(keys[0], Response(completions=[Completion(text="kept")]))])
    writer = shards.ShardWriter(tmp_path / "shards" / "w0.db")
    for i, key in enumerate(keys[:3]):
        writer.add(cache.response_row(key, Response(completions=[Completion(text=f"shard {i}")])))
    writer.add(cache.response_row(keys[3], Response(error="boom")))  # failed: never merged
    writer.close()
    assert set(shards.lookup(tmp_path / "shards", keys)) == set(keys[:3])
    counts = shards.merge(store, tmp_path / "shards")
    assert counts == {"files": 1, "merged": 2, "kept_files": 0}
    texts = dict(store.conn.execute("select key, text from responses").fetchall())
    assert texts == {keys[0]: "kept", keys[1]: "shard 1", keys[2]: "shard 2"}
    assert not (tmp_path / "shards").exists()
    assert shards.merge(store, tmp_path / "shards") == {"files": 0, "merged": 0, "kept_files": 0}


def test_a_shard_with_answers_the_store_cannot_place_is_kept(tmp_path):
    store = Store(tmp_path / "run.db")
    writer = shards.ShardWriter(tmp_path / "shards" / "w0.db")
    writer.add(cache.response_row("f" * 64, Response(completions=[Completion(text="orphan")])))
    writer.close()
    assert shards.merge(store, tmp_path / "shards") == {"files": 1, "merged": 0, "kept_files": 1}
    assert (tmp_path / "shards" / "w0.db").exists()


class Length(Critic):
    name = "length"

    def score(self, items):
        return [Verdict(score=len(i["tail"]), keep=len(i["tail"]) > 3) for i in items]


class Pinned(Length):
    parallel = False


def test_only_critics_without_cross_batch_state_leave_the_driver():
    assert parallel_safe(Length()) and not parallel_safe(Pinned())
    assert not parallel_safe(DedupeCritic()) and not parallel_safe(LLMJudgeCritic(teacher="smollm2"))


class Recording(Executor):
    """Stands in for Ray: records what the stages hand it."""

    name = "recording"

    def __init__(self, teacher: Teacher | None = None):
        self.batches: list[int] = []
        self.answerer = teacher

    def teacher(self, spec, options, store):
        return self.answerer

    def map_batches(self, factory, batches, *, key, heavy=True):
        fn = factory()
        for batch in batches:
            self.batches.append(len(batch))
            yield fn(batch)


def test_critic_batches_go_to_the_current_executor(tmp_path):
    from symkd.scale import use_executor

    store = Store(tmp_path / "run.db")
    with store.transaction() as db:
        db["triples"].insert_all([{"id": f"t{i}", "head": "h", "relation": "xWant", "tail": "x" * i} for i in range(7)], pk="id")
    executor = Recording()
    Length.batch_size = 3
    with use_executor(executor):
        counts = apply_critic(store, Length(), item_table="triples")  # the caller says which table a plain critic scores
    assert executor.batches == [3, 3, 1] and counts == {"scored": 7, "kept": 3, "dropped": 4}
    assert list(score_batches(Pinned(), [[{"tail": "abcd"}]], executor)) == [[Verdict(score=4, keep=True)]]
    assert executor.batches == [3, 3, 1]  # a pinned critic stayed here


class Echo(Teacher):
    backend = "echo"

    def __init__(self):
        super().__init__("echo-1")
        self.seen = 0

    async def agenerate(self, requests, on_response):
        from symkd.scale.sharded import _puller  # a plain list or generation's feed of claimed requests

        pull = _puller(requests)
        while (request := await pull()) is not None:
            self.seen += 1
            on_response(request, Response(completions=[Completion(text=request.prompt.upper())]))


def test_the_session_asks_through_the_executor(tmp_path):
    echo = Echo()
    with Store(tmp_path / "run.db") as store, executor_scope(None):
        with TeacherSession("openai:never-called", store, progress=False, executor=Recording(echo)) as session:
            result = session.ask([_request(1), _request(2)], kind="generate", config={}, stage="s")
            texts = [r.completions[0].text for r in result.responses().values()]
    assert echo.seen == 2 and result.done == 2 and texts == ["PROMPT 1", "PROMPT 2"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "commonsense", "--teacher", "smollm2", "--workers", "2"], "--workers needs --executor ray"),
        (["distill", "commonsense", "--teacher", "smollm2", "--executor", "dask"], "--executor: must be 'local' or 'ray'"),
        (["critic", "apply", "--critics", "rules", "--replicas", "http://a/v1"], "--replicas needs --executor ray"),
        (["generate", "--teacher", "openai:m", "--prompts", str(ROOT / "prompts/examples/quickstart.jsonl"), "--workers", "2"],
         "--workers needs --executor ray"),
    ],
)
def test_cli_executor_errors_are_one_line_exit_2(tmp_path, args, message):
    db = tmp_path / "run.db"
    Store(db).close()
    out = _cli(*args, "--db", str(db))
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_workers_split_the_rate_limits_and_take_turns_on_replicas(monkeypatch):
    pytest.importorskip("ray")
    from symkd.scale.ray_executor import RayExecutor

    executor = RayExecutor(workers=4, replicas=["http://a/v1", "http://b/v1"])  # Ray starts on first use: not here
    monkeypatch.setattr(executor, "_cluster", lambda name: {"CPU": 2.0, "GPU": 0.0}[name])
    options = [executor.worker_options({"rpm": 600, "tpm": 1e6, "concurrency": 8}, i, 4, 0.5) for i in range(4)]
    assert [o["base_url"] for o in options] == ["http://a/v1", "http://b/v1"] * 2
    assert all(o["rpm"] == 150 and o["tpm"] == 250_000 and o["concurrency"] == 8 for o in options)
    assert executor.resources(4, heavy=True) == {"num_cpus": 0.5, "num_gpus": 0.0}  # all four fit on 2 CPUs
    assert not executor.ray.is_initialized()


def test_local_models_get_a_gpu_each_when_the_cluster_has_gpus(monkeypatch):
    pytest.importorskip("ray")
    from symkd.scale.ray_executor import RayExecutor

    executor = RayExecutor()
    monkeypatch.setattr(executor, "_cluster", lambda name: {"CPU": 32.0, "GPU": 4.0}[name])
    assert executor.worker_count(heavy=True) == 4 and executor.worker_count(heavy=False) == 32
    assert executor.resources(4, heavy=True) == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert executor.resources(32, heavy=False)["num_gpus"] == 0.0  # API workers need no GPU
    assert executor.worker_options({}, 0, 4, 1.0) == {"n_threads": 1}  # llama.cpp: its share of the CPUs
