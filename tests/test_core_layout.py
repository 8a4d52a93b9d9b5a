"""The core/pipeline layout and the core's promises: layers, cache identity, options, event loops."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import symkd
from symkd.cli import main
from symkd.errors import UserError
from symkd.store.db import Store, latest_version, version_key
from symkd.teachers.registry import cache_identity, load_teacher
from symkd.teachers.messages import Request
from symkd.teachers.urls import endpoint_identity

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install 'symkd[test]')")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_core_modules_import_no_pipeline():
    code = (
        "import sys, symkd.session, symkd.generation, symkd.critics.cascade, symkd.critics.judge, symkd.graphs, "
        "symkd.students.train, symkd.students.data, symkd.students.card, symkd.students.evaluate, symkd.graphs.triples, "
        "symkd.graphs.relations, symkd.graphs.arrow, symkd.teachers.registry\n"
        "print(sorted(m for m in sys.modules if m.startswith(('symkd.pipelines', 'symkd.cli', 'symkd.api'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys, symkd.pipelines.commonsense; print('symkd.cli' in sys.modules, 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False", "False"]


class _Answering(BaseHTTPRequestHandler):
    word = "?"
    posts = 0

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._json({"object": "list", "data": [{"id": "same-name", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).posts += 1
        message = {"role": "assistant", "content": f"I am {self.word}"}
        self._json({"id": "x", "object": "chat.completion", "created": 0, "model": "same-name",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}})  # fmt: skip


@pytest.fixture
def two_servers():
    servers = []
    for word in ("alpha", "beta"):
        handler = type(f"Handler_{word}", (_Answering,), {"word": word, "posts": 0})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((f"http://127.0.0.1:{server.server_address[1]}/v1", handler, server))
    yield servers
    for _, _, server in servers:
        server.shutdown()


def _ask(db: Path, base_url: str) -> str:
    request = Request(id="q", messages=[{"role": "user", "content": "who are you?"}])
    result = symkd.generate("openai:same-name", [request], db, base_url=base_url, progress=False)
    (item, _, response), = list(result)
    return response.completions[0].text


def test_two_servers_serving_one_model_name_do_not_share_answers(two_servers, tmp_path):
    (url_a, a, _), (url_b, b, _) = two_servers
    db = tmp_path / "run.db"
    assert _ask(db, url_a) == "I am alpha"
    assert _ask(db, url_b) == "I am beta"  # not alpha's cached answer
    assert (a.posts, b.posts) == (1, 1)
    assert _ask(db, url_a + "/") == "I am alpha" and a.posts == 1  # the same server, normalised: cached
    with Store(db) as store:
        models = {r["model"] for r in store.query("select model from requests")}
    assert models == {"same-name"}  # the recorded model name stays plain


def test_endpoint_identity_is_normalised_and_keeps_official_keys():
    assert endpoint_identity("http://user:pw@LOCALHOST:80/v1/") == "http://localhost/v1"
    assert endpoint_identity("https://api.openai.com/v1") == "" == endpoint_identity(None)
    assert cache_identity("openai:gpt-4o-mini") == ("openai", "gpt-4o-mini")  # keys of earlier DBs still match
    assert cache_identity("openai:m", base_url="http://h:8000/v1") == ("openai", "m@http://h:8000/v1")


def test_unknown_and_bad_teacher_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(UserError, match=r"unknown teacher option 'concurency'; accepted: .*concurrency"):
        load_teacher("openai:x", concurency=64, base_url="http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="unknown teacher option 'concurency'"):
        symkd.generate("openai:x", [Request(id="a", prompt="p")], tmp_path / "a.db", concurency=64, progress=False)
    with pytest.raises(UserError, match="rpm"):
        load_teacher("openai:x", rpm=-5, base_url="http://127.0.0.1:9/v1")
    assert not (tmp_path / "a.db").exists()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n')
    for flag, value in (("--concurrency", "0"), ("--rpm", "-5"), ("--timeout", "0")):
        with pytest.raises(SystemExit) as info:
            main(["generate", "-t", "openai:x", "-p", str(prompts), "--db", str(tmp_path / "b.db"), flag, value])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1 and flag.strip("-") in err, err
    assert not (tmp_path / "b.db").exists()


def test_sync_api_works_inside_a_running_event_loop(fake_openai, tmp_path):
    """What Jupyter does: the user's cell runs while the kernel's loop is running."""
    requests = [Request(id=str(i), prompt=f"line {i}") for i in range(3)]

    async def cell():
        return symkd.generate("openai:fake", requests, tmp_path / "run.db", base_url=fake_openai.base_url, progress=False)

    result = asyncio.run(cell())
    assert (result.total, result.done, result.failed) == (3, 3, 0)
    assert [item for item, _, resp in result if resp is not None and resp.ok] == ["0", "1", "2"]


def test_critic_versions_compare_as_versions(tmp_path):
    assert version_key("9") < version_key("10") and latest_version(["9", "10", "2"]) == "10"
    from symkd.graphs.triples import add_triples, curated_triples

    with Store(tmp_path / "run.db") as store:
        add_triples(store, [{"head": "PersonX eats", "relation": "xNeed", "tail": t} for t in ("food", "a fork")])
        ids = {r["tail"]: r["id"] for r in store.query("select id, tail from triples")}
        with store.transaction() as db:
            db["critic_scores"].insert_all([
                {"item_table": "triples", "item_id": ids["food"], "critic": "c", "critic_version": "9", "score": 0, "decision": "drop"},
                {"item_table": "triples", "item_id": ids["food"], "critic": "c", "critic_version": "10", "score": 1, "decision": "keep"},
                {"item_table": "triples", "item_id": ids["a fork"], "critic": "c", "critic_version": "9", "score": 1, "decision": "keep"},
            ])  # fmt: skip
        kept = [r["tail"] for r in curated_triples(store, critics=["c"])]
    assert kept == ["food"]  # version 10 is the latest, not "9" (text order)


def test_a_pipeline_uses_another_only_through_its_public_module():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("symkd")
    pipelines = sorted(m for m in graph.find_children("symkd.pipelines"))
    assert "symkd.pipelines.commonsense" in pipelines
    wrong = []
    for source in pipelines:
        for module in graph.find_descendants(source) | {source}:
            for imported in graph.find_modules_directly_imported_by(module):
                owner = next((p for p in pipelines if imported == p or imported.startswith(p + ".")), None)
                if owner not in (None, source) and imported != owner:
                    wrong.append(f"{module} -> {imported}")
    assert not wrong, "import the other pipeline's public module instead: " + "; ".join(wrong)


def test_a_model_retrained_in_the_same_folder_gets_new_cache_keys(tmp_path):
    from symkd.teachers.embedded import model_id

    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    first = model_id(str(folder))
    assert first.startswith(f"{folder}#") and model_id(str(folder)) == first  # stable while unchanged
    (folder / "model.safetensors").write_bytes(b"y" * 11)  # retrained in place
    assert model_id(str(folder)) != first
    (folder / "training.json").write_text(json.dumps({"fingerprint": "abc123"}))
    assert model_id(str(folder)) == f"{folder}#abc123"  # symkd students: their training fingerprint
    assert model_id("gpt-4o-mini") == "gpt-4o-mini"  # API model names are left alone
