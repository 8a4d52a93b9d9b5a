"""Helpers for tests that drive the real ``symkd`` command, in-process or in subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OPENAI_API_KEY": "tok_symkdProcTests"}
LINE = "symkd: interrupted, rerun the same command to resume"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``symkd ARGS`` run in this process."""
    import pytest

    from symkd.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def write_prompts(path: Path, n: int, extra: str = "") -> Path:
    path.write_text("".join(json.dumps({"id": f"i{i}", "prompt": f"item {i} {extra}".strip()}) + "\n" for i in range(n)))
    return path


def generate_args(base_url: str, prompts: Path, db: Path, *extra: str) -> list[str]:
    return ["generate", "-t", "openai:fake", "--base-url", base_url, "-p", str(prompts), "--db", str(db), "-q", *extra]


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "symkd.cli", *args]


def run(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd(*args), capture_output=True, text=True, timeout=timeout, env=env or ENV, cwd=ROOT)


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or ENV, cwd=ROOT)


def ok_count(db: Path) -> int:
    """Answers committed so far (0 while the file or its tables do not exist yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def wait_for_answers(db: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> int:
    """Block until ``db`` holds at least ``n`` ok answers (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while (got := ok_count(db)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"only {got} answers after {timeout}s"
        time.sleep(0.02)
    return got


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """stderr must be exactly one ``symkd: error:`` line, without a traceback."""
    err = proc.stderr
    assert "Traceback" not in err, err
    assert err.startswith("symkd: error: ") and err.count("\n") == 1, err
    return err.strip()
