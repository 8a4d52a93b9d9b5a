"""The retry/failure policy of API teachers, over real HTTP, through ``symkd.generate``.

Every test drives the ``openai`` backend against the fault-injecting loopback server
(``symkd.testing.openai_server``; faults are asked for with ``#fault=KINDxN`` inside the
prompt) and checks what ends up in the store: the ``responses`` row of each item (status,
attempts, error, latency), the run's counts, and what the server saw (``/stats``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import symkd
from symkd.errors import TeacherUnavailable
from symkd.store import runs
from symkd.store.db import Store
from symkd.teachers.openai_api import retry_after_seconds, safe_url
from symkd.teachers.messages import GenerationParams, Message, Request
from symkd.testing.launch import start_fake_server

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "tok_symkdTestSecret4f1c9e0a7b"  # not sk-shaped: only exact redaction catches it
#: quick retries so the whole file runs in seconds (Retry-After, when sent, still rules)
FAST = {"backoff_base": 0.05, "backoff_max": 1.0, "timeout": 5.0, "max_retries": 3, "concurrency": 4}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def chat(text: str, **params) -> Request:
    """A one-message chat request; its id is its text (which the server counts tries by)."""
    params.setdefault("max_tokens", 16)
    return Request(id=text, messages=[Message(role="user", content=text)], params=GenerationParams(**params))


def run(server, db, requests, **options):
    settings = {**FAST, "base_url": server.base_url, **options}
    return symkd.generate("openai:fake", requests, db, progress=False, **settings)


def rows(db) -> dict[str, dict]:
    """item id -> its responses row (completions decoded)."""
    with Store(db) as store:
        found = store.query(
            "select i.item_id, r.* from run_items i join responses r on r.key = i.request_key"
        )
    for row in found:
        row["completions"] = json.loads(row["completions"])
    return {row["item_id"]: row for row in found}


def counts(db) -> dict:
    with Store(db) as store:
        (only,) = runs.list_runs(store)
    return only


def test_429_waits_for_retry_after(fake_openai, db_path):
    # backoff_base is 0.05 s: only honouring Retry-After (0.2 s) makes the wait that long
    began = time.monotonic()
    summary = run(fake_openai, db_path, [chat("a #fault=429x1"), chat("b #fault=429x2")])
    assert time.monotonic() - began >= 0.4  # b waited out two Retry-Afters
    assert (summary.done, summary.failed) == (2, 0)
    got = rows(db_path)
    assert got["a #fault=429x1"]["attempts"] == 2
    assert got["b #fault=429x2"]["attempts"] == 3
    assert got["a #fault=429x1"]["latency_s"] >= 0.2
    assert got["b #fault=429x2"]["latency_s"] >= 0.4
    assert fake_openai.stats()["by_input"] == {"a #fault=429x1": 2, "b #fault=429x2": 3}


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after_seconds({"retry-after": date}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_server_errors_are_retried_until_they_pass(fake_openai, db_path):
    summary = run(fake_openai, db_path, [chat("x #fault=500x2"), chat("y #fault=503x3"), chat("z plain")])
    assert (summary.done, summary.failed) == (3, 0)
    got = rows(db_path)
    assert [got[k]["attempts"] for k in ("x #fault=500x2", "y #fault=503x3", "z plain")] == [3, 4, 1]
    assert got["y #fault=503x3"]["completions"][0]["text"] == "echo 0: y #fault=503x3"
    assert fake_openai.stats()["total"] == 3 + 4 + 1


def test_a_hang_is_cut_by_the_timeout_and_retried(fake_openai, db_path):
    began = time.monotonic()
    summary = run(fake_openai, db_path, [chat("h #fault=hangx1")], timeout=1.0)
    assert summary.done == 1
    row = rows(db_path)["h #fault=hangx1"]
    assert row["status"] == "ok" and row["attempts"] == 2
    assert 1.0 <= row["latency_s"] < 3.0  # the server would have hung for 30 s
    assert time.monotonic() - began < 10.0


def test_bad_bodies_are_retried(fake_openai, db_path):
    kinds = ["malformed", "truncated", "empty"]  # not JSON; cut short mid-body; JSON without choices
    summary = run(fake_openai, db_path, [chat(f"b #fault={kind}x2") for kind in kinds])
    assert (summary.done, summary.failed) == (3, 0)
    got = rows(db_path)
    for kind in kinds:
        row = got[f"b #fault={kind}x2"]
        assert row["attempts"] == 3
        assert row["completions"][0]["text"] == f"echo 0: b #fault={kind}x2"


def test_persistent_faults_are_recorded_as_failures_not_dropped(fake_openai, db_path):
    items = [chat("m #fault=malformedxinf"), chat("t #fault=truncatedxinf"), chat("e #fault=emptyxinf")]
    items += [chat("c #fault=cutxinf")]  # cut short, but complete by its Content-Length
    items += [chat("s #fault=500xinf"), chat("fine")]
    summary = run(fake_openai, db_path, items, max_retries=2)
    assert (summary.total, summary.done, summary.failed) == (6, 1, 5)
    got = rows(db_path)
    reasons = {
        "m #fault=malformedxinf": "malformed response body: JSONDecodeError",
        "t #fault=truncatedxinf": "truncated response body",
        "c #fault=cutxinf": "truncated response body: the JSON ends after",
        "e #fault=emptyxinf": "no choices",
        "s #fault=500xinf": "HTTP 500",
    }
    for item, reason in reasons.items():
        row = got[item]
        assert row["status"] == "failed" and row["completions"] == []
        assert row["attempts"] == 3
        assert row["error"].startswith("gave up after 3 attempts") and reason in row["error"], row["error"]
    assert got["fine"]["status"] == "ok"
    tally = counts(db_path)
    assert tally["status"] == "incomplete"
    assert (tally["items"], tally["ok"], tally["failed"], tally["pending"]) == (6, 1, 5, 0)
    assert tally["items"] == tally["ok"] + tally["failed"]


def test_a_400_is_not_retried(fake_openai, db_path):
    summary = run(fake_openai, db_path, [chat("bad #fault=400xinf")])
    assert summary.failed == 1
    row = rows(db_path)["bad #fault=400xinf"]
    assert row["attempts"] == 1
    assert row["error"] == "HTTP 400: injected 400"
    assert fake_openai.stats()["total"] == 1


def test_a_rerun_sends_only_the_failed_items(fake_openai, db_path):
    items = [chat("one"), chat("two"), chat("flaky #fault=500x3")]
    first = run(fake_openai, db_path, items, max_retries=1)
    assert (first.done, first.cached, first.failed) == (2, 0, 1)
    assert rows(db_path)["flaky #fault=500x3"]["attempts"] == 2
    second = run(fake_openai, db_path, items, max_retries=1)
    assert second.run_id == first.run_id
    assert (second.done, second.cached, second.failed) == (1, 2, 0)
    assert fake_openai.stats()["by_input"] == {"one": 1, "two": 1, "flaky #fault=500x3": 4}
    tally = counts(db_path)
    assert (tally["status"], tally["attempts"], tally["ok"], tally["failed"]) == ("done", 2, 3, 0)


def test_n_samples_in_one_call_or_asked_again(fake_openai, db_path):
    summary = run(fake_openai, db_path, [chat("three", n=3), chat("stubborn #ignore-n", n=3)])
    assert summary.done == 2
    got = rows(db_path)
    assert [c["text"] for c in got["three"]["completions"]] == ["echo 0: three", "echo 1: three", "echo 2: three"]
    # a server that ignores n answers one choice a call: the backend asks for the rest
    assert len(got["stubborn #ignore-n"]["completions"]) == 3
    assert fake_openai.stats()["by_input"] == {"three": 1, "stubborn #ignore-n": 3}


def test_logprobs_are_parsed_for_chat_and_completions(fake_openai, db_path):
    completion = Request(id="p", prompt="say it", params=GenerationParams(max_tokens=16, logprobs=True))
    summary = run(fake_openai, db_path, [chat("lp words", logprobs=True), completion, chat("none")])
    assert summary.done == 3
    got = rows(db_path)
    # the fake server gives token j of the answer the logprob -0.1 * (j + 1)
    assert got["lp words"]["completions"][0]["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert got["p"]["completions"][0]["text"] == "echo 0: say it"
    assert got["p"]["completions"][0]["token_logprobs"] == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert got["none"]["completions"][0]["token_logprobs"] is None


def _all_text(db: Path) -> str:
    """Every value of every table, plus the raw bytes of the database files."""
    parts = []
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
    for table in tables:
        parts += [repr(row) for row in con.execute(f'select * from "{table}"')]
    con.close()
    for path in db.parent.glob(db.name + "*"):
        parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_the_api_key_never_reaches_the_store(fake_openai, db_path):
    # the 401 fault echoes the Authorization header back in its message
    items = [chat("ok"), chat("who #fault=401x1"), chat("bad #fault=400x1"), chat("gone #fault=503xinf")]
    summary = run(fake_openai, db_path, items, max_retries=1)
    assert (summary.done, summary.failed) == (1, 3)
    got = rows(db_path)
    assert got["who #fault=401x1"]["error"] == "HTTP 401: Incorrect API key provided: ***"
    assert FAKE_KEY not in _all_text(db_path)
    assert all(FAKE_KEY not in (row["error"] or "") for row in got.values())


def test_credentials_in_the_base_url_are_not_recorded(fake_openai, db_path):
    url = f"http://alice:hunter2-url-secret@127.0.0.1:{fake_openai.port}/v1"
    summary = run(fake_openai, db_path, [chat("hello"), chat("who #fault=401x1")], base_url=url)
    assert (summary.done, summary.failed) == (1, 1)
    # they went as HTTP Basic auth (echoed back by the 401), redacted in the failure reason
    assert rows(db_path)["who #fault=401x1"]["error"] == "HTTP 401: Incorrect API key provided: Basic ***"
    with Store(db_path) as store:
        config = runs.get_run(store, summary.run_id)["config"]
    assert config["teacher"]["base_url"] == f"http://127.0.0.1:{fake_openai.port}/v1"
    text = _all_text(db_path)
    assert "hunter2-url-secret" not in text and "alice" not in text
    assert safe_url("https://u:p@host:8443/v1?key=abc") == "https://host:8443/v1"


def test_a_percent_encoded_password_is_redacted_decoded_too(fake_openai, db_path):
    # sent decoded as HTTP Basic auth; the server names what it got in its error message
    url = f"http://alice:p%40ss%2Fw0rd-secret@127.0.0.1:{fake_openai.port}/v1"
    summary = run(fake_openai, db_path, [chat("who #fault=401userx1")], base_url=url)
    assert summary.failed == 1
    assert rows(db_path)["who #fault=401userx1"]["error"] == "HTTP 401: bad credentials ***:***"
    text = _all_text(db_path)
    assert "p@ss/w0rd-secret" not in text and "p%40ss%2Fw0rd-secret" not in text


def test_a_key_in_the_user_name_is_redacted_like_a_password(fake_openai, db_path):
    # some servers take the key as the Basic-auth user name, with no password; this one echoes it
    url = f"http://tok%2Bin-the-user-name@127.0.0.1:{fake_openai.port}/v1"
    summary = run(fake_openai, db_path, [chat("who #fault=401userx1")], base_url=url)
    assert summary.failed == 1
    assert rows(db_path)["who #fault=401userx1"]["error"] == "HTTP 401: bad credentials ***:"
    text = _all_text(db_path)
    assert "in-the-user-name" not in text


def test_unreachable_server_is_one_clear_line_without_credentials(db_path):
    dead = start_fake_server()
    port = dead.port
    dead.stop()
    dead.proc.stdout.close()
    url = f"http://bob:pw-secret-123@127.0.0.1:{port}/v1"
    with pytest.raises(TeacherUnavailable) as err:
        symkd.generate("openai:fake", [chat("x")], db_path, progress=False, base_url=url, timeout=2.0)
    assert f"cannot reach http://127.0.0.1:{port}/v1: connection error: " in str(err.value)
    assert "pw-secret-123" not in str(err.value) and "\n" not in str(err.value)


_CLI_PROBE = """
import sys
from symkd.cli import main
main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "openai") if m in sys.modules)
print("HEAVY", heavy)
"""


def test_cli_generate_with_an_api_teacher_imports_no_torch_and_no_sdk(fake_openai, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "messages": [{"role": "user", "content": "yo"}]}\n')
    db = tmp_path / "cli.db"
    args = ["generate", "--teacher", "openai:fake", "--prompts", str(prompts), "--db", str(db)]
    args += ["--base-url", fake_openai.base_url, "--json", "--quiet"]
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY}
    proc = subprocess.run([sys.executable, "-c", _CLI_PROBE, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    summary = json.loads(proc.stdout.splitlines()[0])
    assert (summary["done"], summary["failed"]) == (2, 0)
    assert fake_openai.stats()["by_input"] == {"hi": 1, "yo": 1}
