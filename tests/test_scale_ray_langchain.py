"""LangChain teachers on the Ray executor (issue 20): a ``langchain:mod:make`` spec whose module
sits in the user's working directory, and a chat model object sent pickled, answered by Ray
workers under the local run's cache identity, so a local rerun answers from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("langchain_core")

from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel  # noqa: E402

from symkd.errors import UserError  # noqa: E402
from symkd.scale.ray_executor import RayExecutor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MODULE = textwrap.dedent(
    """
    import os
    from langchain_core.language_models import FakeListChatModel

    LOG = {log!r}


    class EchoChat(FakeListChatModel):
        def _call(self, messages, stop=None, run_manager=None, **kwargs):
            with open(LOG, "a") as out:
                out.write(f"{{os.getpid()}}\\n")
            return "echo " + str(messages[-1].content)


    def make():
        return EchoChat(responses=["unused"])
    """
)


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


def requests(count: int) -> list:
    from symkd.teachers.messages import GenerationParams, Request

    return [Request(id=f"q{i}", messages=[{"role": "user", "content": f"item {i}"}], params=GenerationParams(max_tokens=8))
            for i in range(count)]  # fmt: skip


@pytest.mark.slow
def test_cli_langchain_spec_from_the_cwd_on_ray_then_local_rerun_is_cached(local_ray, tmp_path):
    work = tmp_path / "work"  # the user's directory: lcmod is importable only from here
    work.mkdir()
    log = tmp_path / "calls.log"
    (work / "lcmod.py").write_text(MODULE.format(log=str(log)))
    (work / "prompts.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"line {i}"}) + "\n" for i in range(20)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ray_flags = ["--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address, "--workers", "2"]

    def generate(*extra: str) -> tuple[dict, int]:
        proc = subprocess.Popen([sys.executable, "-m", "symkd.cli", "generate", "--teacher", "langchain:lcmod:make",
                                 "--prompts", "prompts.jsonl", "--db", "run.db", "--json", "--quiet", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=env)  # fmt: skip
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        return json.loads(stdout.strip().splitlines()[-1]), proc.pid

    first, driver = generate(*ray_flags)
    pids = log.read_text().split()
    assert first["done"] == 20 and len(pids) == 20  # each prompt asked once
    assert str(driver) not in pids  # by the workers: the driver only built the model for its identity
    again, _ = generate()  # a local run of the same spec: the same cache identity
    assert again["done"] == 0 and again["cached"] == 20
    assert len(log.read_text().split()) == 20  # 0 new requests
    import sqlite3

    with sqlite3.connect(work / "run.db") as conn:
        texts = dict(conn.execute("select status, count(*) from responses group by status").fetchall())
        config, model = conn.execute("select config, model from runs order by rowid limit 1").fetchone()
        echoed = conn.execute("select count(*) from responses where text like 'echo line %'").fetchone()[0]
    assert texts == {"ok": 20} and echoed == 20
    assert '"executor":"ray"' in config and model.startswith("EchoChat#")


@pytest.mark.slow
def test_a_chat_model_object_is_sent_pickled_and_shares_the_local_cache(local_ray, tmp_path):
    from symkd.session import TeacherSession
    from symkd.store.db import Store

    model = FakeListChatModel(responses=["a fixed answer"])
    with Store(tmp_path / "run.db") as store, RayExecutor(workers=2) as executor:
        result = TeacherSession(model, store, {}, progress=False, executor=executor).ask(
            requests(8), kind="generate", config={}, stage="gen")
        assert executor.pool is not None and len(executor.pool.alive) == 2  # answered there, not here
    assert result.done == 8 and result.failed == 0
    with Store(tmp_path / "run.db") as store:
        local = TeacherSession(FakeListChatModel(responses=["a fixed answer"]), store, {}, progress=False).ask(
            requests(8), kind="generate", config={}, stage="gen")
    assert local.cached == 8 and local.done == 0


def test_a_chat_model_object_that_does_not_pickle_is_refused_in_one_line(tmp_path):
    model = GenericFakeChatModel(messages=(m for m in ["never sent"]))  # a generator does not pickle
    executor = RayExecutor(workers=1)
    with pytest.raises(UserError, match="does not pickle.*langchain:module:factory") as caught:
        executor.teacher(model, {}, tmp_path / "run.db")
    assert "\n" not in str(caught.value) and not executor.started  # refused before Ray starts


def test_a_langchain_spec_ships_its_module_folder_and_the_local_identity(tmp_path, monkeypatch):
    from symkd.teachers.registry import cache_identity

    (tmp_path / "lcmod2.py").write_text(MODULE.format(log=str(tmp_path / "log")).replace("lcmod", "lcmod2"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    executor = RayExecutor(workers=1)
    teacher = executor.teacher("langchain:lcmod2:make", {}, tmp_path / "run.db")
    assert teacher.worker_spec == "langchain:lcmod2:make" and teacher.imports == [("lcmod2", str(tmp_path))]
    assert teacher.cache_identity() == cache_identity("langchain:lcmod2:make")
    assert teacher.cache_identity()[1].startswith("EchoChat#") and not executor.started
    sys.modules.pop("lcmod2", None)
