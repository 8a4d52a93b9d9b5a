"""The command line: exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.procs import run_cli




def _prompts(tmp_path, n=3, extra=""):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": f"i{i}", "prompt": f"line {i} {extra}"}) + "\n" for i in range(n)))
    return path


def test_help_and_listings(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "generate" in out and "runs" in out and "teachers" in out
    code, out, _ = run_cli(capsys, "teachers")
    assert code == 0 and "openai" in out and "smollm2" in out
    code, out, _ = run_cli(capsys, "templates")
    assert code == 0 and "quickstart/explain" in out


def test_generate_writes_db_and_out_and_summary(capsys, tmp_path, fake_openai):
    db, out = tmp_path / "r.db", tmp_path / "out.jsonl"
    args = ["generate", "-t", "openai:fake", "--base-url", fake_openai.base_url, "-p", str(_prompts(tmp_path)), "--db", str(db), "-o", str(out), "-q"]
    code, stdout, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["total"] == 3 and summary["done"] == 3 and summary["failed"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["i0", "i1", "i2"] and rows[0]["completions"] == ["echo 0: line 0"]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "done 0, cached 3, failed 0" in stdout
    code, stdout, _ = run_cli(capsys, "runs", "--db", str(db), "--json")
    [run] = json.loads(stdout)
    assert run["items"] == 3 and run["ok"] == 3 and run["attempts"] == 2


def test_failed_items_exit_1_and_are_listed(capsys, tmp_path, fake_openai):
    db = tmp_path / "r.db"
    prompts = _prompts(tmp_path, 2, extra="#fault=400x1")
    code, stdout, err = run_cli(capsys, "generate", "-t", "openai:fake", "--base-url", fake_openai.base_url, "-p", str(prompts), "--db", str(db), "-q")
    assert code == 1 and "failed 2" in stdout and "Rerun to retry" in err


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "no such file"),
        ("badjson", "p.jsonl:2: invalid JSON"),
        ("badteacher", "unknown teacher spec 'nosuch:x'"),
        ("nofolder", "does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(capsys, tmp_path, fake_openai, setup, expected):
    prompts = _prompts(tmp_path)
    db = tmp_path / "r.db"
    teacher = "openai:fake"
    if setup == "missing":
        prompts = tmp_path / "absent.jsonl"
    elif setup == "badjson":
        prompts.write_text('{"id": "a", "prompt": "x"}\n{oops\n')
    elif setup == "badteacher":
        teacher = "nosuch:x"
    elif setup == "nofolder":
        db = tmp_path / "no" / "r.db"
    code, stdout, err = run_cli(capsys, "generate", "-t", teacher, "--base-url", fake_openai.base_url, "-p", str(prompts), "--db", str(db), "-q")
    assert code == 2
    assert err.startswith("symkd: error: ") and expected in err and err.count("\n") == 1
    assert not db.exists()


def test_runs_on_missing_db_is_an_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "runs", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no such database" in err
    assert not (tmp_path / "none.db").exists()


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "symkd.cli", "generate", "-t", "openai:x", "--base-url", "http://127.0.0.1:9/v1", "-p", str(tmp_path / "none.jsonl"), "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
