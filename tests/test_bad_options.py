"""Bad option values and unusable paths: one line, exit 2, nothing sent and nothing written.

Each case runs the real ``symkd generate`` in a subprocess against the loopback server and
checks stderr (one ``symkd: error:`` line, no traceback), that no database or output file
appeared, and that the server received no completion request.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.procs import generate_args, ok_count, one_error_line, run, start, wait_for_answers, write_prompts

FLAGS = [
    (["-c", "0"], "--concurrency: must be greater than or equal to 1 (got 0)"),
    (["--rpm", "-5"], "--rpm: must be greater than 0 (got -5.0)"),
    (["--rpm", "0"], "--rpm: must be greater than 0 (got 0.0)"),
    (["--tpm", "0"], "--tpm: must be greater than 0"),
    (["--timeout", "0"], "--timeout: must be greater than 0 (got 0.0)"),
    (["--max-retries", "-1"], "--max-retries: must be greater than or equal to 0"),
    (["--batch-size", "0"], "--batch-size: must be greater than or equal to 1"),
    (["--samples", "0"], "--samples: must be greater than or equal to 1"),
    (["--n", "0"], "--samples: must be greater than or equal to 1"),  # the old spelling still parses
    (["--max-tokens", "0"], "--max-tokens: must be greater than or equal to 1"),
    (["--temperature", "-1"], "--temperature: must be greater than or equal to 0"),
    (["--top-p", "0"], "--top-p: must be greater than 0"),
]


@contextlib.contextmanager
def read_only_folder(path: Path):
    """A folder nobody can create files in (root included: chattr +i where chmod is not enough)."""
    path.mkdir()
    path.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        try:
            (path / ".probe").touch()
        except OSError:
            yield path
        else:
            pytest.skip("cannot make a read-only folder here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o755)


def _refused(server, tmp_path: Path, proc: subprocess.CompletedProcess, expected: str, *outputs: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert expected in line, line
    assert not (tmp_path / "r.db").exists(), "a database was written"
    for out in outputs:
        assert not out.exists(), f"{out} was written"
    assert server.stats()["total"] == 0, "a request was sent"


@pytest.mark.parametrize("flags, expected", FLAGS, ids=[" ".join(f) for f, _ in FLAGS])
def test_bad_option_values(tmp_path, fake_openai, flags, expected):
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    proc = run(*generate_args(fake_openai.base_url, prompts, tmp_path / "r.db", *flags))
    _refused(fake_openai, tmp_path, proc, expected)


@pytest.mark.parametrize("field", ["prompt", "id"])
def test_a_lone_surrogate_is_one_line(tmp_path, fake_openai, field):
    line = {"id": "a", "prompt": "fine"}
    line[field] = "bad \ud800 text"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps(line) + "\n")  # ensure_ascii: the file holds the escape \\ud800
    proc = run(*generate_args(fake_openai.base_url, prompts, tmp_path / "r.db"))
    _refused(fake_openai, tmp_path, proc, "lone surrogate")


@pytest.mark.parametrize("where", ["folder", "no-folder", "under-a-file", "read-only"])
def test_unusable_out_is_caught_before_the_first_request(tmp_path, fake_openai, where):
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    with contextlib.ExitStack() as stack:
        if where == "folder":
            out = tmp_path / "existing"
            out.mkdir()
            expected = "is a folder"
        elif where == "no-folder":
            out, expected = tmp_path / "nowhere" / "o.jsonl", "does not exist"
        elif where == "under-a-file":
            (tmp_path / "file").write_text("x")
            out, expected = tmp_path / "file" / "o.jsonl", "does not exist"
        else:
            folder = stack.enter_context(read_only_folder(tmp_path / "ro"))
            out, expected = folder / "o.jsonl", "cannot write in"
        proc = run(*generate_args(fake_openai.base_url, prompts, tmp_path / "r.db", "-o", str(out)))
        _refused(fake_openai, tmp_path, proc, expected, *([] if where == "folder" else [out]))
        if where == "read-only":
            assert list(out.parent.iterdir()) == []


def test_db_that_is_a_folder(tmp_path, fake_openai):
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    (tmp_path / "adir").mkdir()
    proc = run(*generate_args(fake_openai.base_url, prompts, tmp_path / "adir"))
    _refused(fake_openai, tmp_path, proc, "is a folder")


def test_out_failing_after_the_run_still_prints_the_summary(tmp_path, slow_openai):
    n = 40
    prompts, db = write_prompts(tmp_path / "p.jsonl", n), tmp_path / "r.db"
    folder = tmp_path / "outdir"
    folder.mkdir()
    proc = start(*generate_args(slow_openai.base_url, prompts, db, "-c", "4", "-o", str(folder / "o.jsonl"), "--json"))
    wait_for_answers(db, 4, proc)
    shutil.rmtree(folder)  # the folder goes away while the run is going
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    summary = json.loads(out)
    assert (summary["done"], summary["failed"]) == (n, 0)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert f"every answer is safe in {db}" in err
    assert ok_count(db) == n
    began = time.monotonic()
    folder.mkdir()
    again = run(*generate_args(slow_openai.base_url, prompts, db, "-o", str(folder / "o.jsonl"), "--json"))
    assert again.returncode == 0 and json.loads(again.stdout)["cached"] == n
    assert len((folder / "o.jsonl").read_text().splitlines()) == n and time.monotonic() - began < 30
