"""Plugins through entry points (a real installed package) and curated data out as Parquet / datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from symkd.cli import main
from symkd.graphs.triples import add_triples, curated_triples
from symkd.store.db import Store

PLUGIN_MODULE = '''
from symkd.critics.base import Critic, Verdict
from symkd.teachers.base import LocalTeacher
from symkd.teachers.messages import Completion, Response


class ShortTailCritic(Critic):
    """Keeps tails of at most max_words words."""

    name = "short_tail"
    version = "1"

    def __init__(self, max_words: int = 2):
        self.max_words = max_words

    def score(self, items):
        return [Verdict(1.0, len((i["tail"] or "").split()) <= self.max_words) for i in items]


class ShoutTeacher(LocalTeacher):
    """Answers every prompt with the prompt in capitals."""

    backend = "shout"

    def __init__(self, model, *, batch_size=8, volume: int = 1):
        super().__init__(model, batch_size=batch_size)
        self.volume = volume

    def generate_batch(self, requests):
        text = lambda r: r.prompt if r.prompt is not None else r.messages[-1].content
        return [Response(completions=[Completion(text=text(r).upper() + "!" * self.volume)]) for r in requests]
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """pip-installs a tiny plugin package (setuptools, entry points) into a folder on PYTHONPATH."""
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "symkd_demo_plugin.py").write_text(PLUGIN_MODULE)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "symkd-demo-plugin"
        version = "0.1"
        [project.entry-points."symkd.critics"]
        short_tail = "symkd_demo_plugin:ShortTailCritic"
        [project.entry-points."symkd.teachers"]
        shout = "symkd_demo_plugin:ShoutTeacher"
        [project.entry-points."symkd.losses"]
        plugin_kl = "symkd.students.losses.forward_kl:ForwardKL"
        [tool.setuptools]
        py-modules = ["symkd_demo_plugin"]
    '''))
    site = tmp_path_factory.mktemp("plugin-site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)], capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"could not install the plugin package: {done.stderr[-2000:]}")
    return site


def _symkd(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, env=env)


def _store_with_triples(db: Path) -> None:
    with Store(db) as store:
        add_triples(store, [{"head": "PersonX bakes bread", "relation": "xNeed", "tail": t}
                            for t in ("flour", "to buy some flour first", "an oven")])  # fmt: skip


def test_an_installed_plugin_adds_a_critic_a_teacher_and_a_loss(plugin_site, tmp_path):
    listed = _symkd(plugin_site, "plugins")
    assert listed.returncode == 0, listed.stderr
    assert "short_tail" in listed.stdout and "shout" in listed.stdout and "plugin_kl" in listed.stdout
    db = tmp_path / "run.db"
    _store_with_triples(db)
    applied = _symkd(plugin_site, "critic", "apply", "--db", str(db), "--critics", "short_tail:max_words=2", "--json", "-q")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout.splitlines()[-1])["kept_by_all"] == 2  # "flour", "an oven"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hello"}\n')
    out = tmp_path / "out.jsonl"
    generated = _symkd(plugin_site, "generate", "-t", "shout:any", "-p", str(prompts), "--db", str(db), "-o", str(out), "-q")
    assert generated.returncode == 0, generated.stderr
    assert json.loads(out.read_text())["completions"] == ["HELLO!"]
    unknown = _symkd(plugin_site, "critic", "apply", "--db", str(db), "--critics", "short_tail:wordz=2")
    assert unknown.returncode == 2 and "has no option 'wordz'" in unknown.stderr


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    db = tmp_path / "run.db"
    _store_with_triples(db)
    done = _symkd(tmp_path, "critic", "apply", "--db", str(db), "--critics", "short_tail")
    assert done.returncode == 2 and "unknown critic 'short_tail'" in done.stderr


def test_parquet_export_and_to_dataset_round_trip(tmp_path, capsys):
    import datasets
    import pyarrow.parquet as pq

    import symkd

    db = tmp_path / "run.db"
    _store_with_triples(db)
    assert main(["critic", "apply", "--db", str(db), "--critics", "rules", "-q"]) is None
    capsys.readouterr()
    out = tmp_path / "kept.parquet"
    main(["export", "--db", str(db), "--format", "parquet", "--out", str(out), "--critic", "rules"])
    with Store(db, create=False) as store:
        expected = curated_triples(store, critics=["rules"])
    table = pq.read_table(out)
    assert table.num_rows == len(expected) > 0
    assert table.column("id").to_pylist() == [r["id"] for r in expected]
    assert {"score_rules", "decision_rules", "version_rules", "run_id", "template_id", "response_key"} <= set(table.column_names)
    assert set(table.column("decision_rules").to_pylist()) == {"keep"}
    loaded = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert loaded["tail"] == [r["tail"] for r in expected]
    direct = symkd.to_dataset(db, critics=["rules"])
    assert direct["id"] == loaded["id"] and direct.column_names == loaded.column_names
    chat = tmp_path / "chat.jsonl"
    main(["export", "--db", str(db), "--format", "chat-jsonl", "--out", str(chat)])
    first = json.loads(chat.read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][2]["content"] == "flour"
