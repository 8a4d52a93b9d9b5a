"""Shared by the CLI benchmarks: a prompts file of N items and a timed ``symkd generate``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def write_prompts(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"i{i}", "prompt": f"benchmark item {i}"}) + "\n" for i in range(n)))
    return path


def generate_cmd(base_url: str, prompts: Path, db: Path, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "symkd.cli", "generate", "-t", "openai:fake", "--base-url", base_url,
        "-p", str(prompts), "--db", str(db), "-c", str(concurrency), "-q", "--json",
    ]


def timed_run(cmd: list[str]) -> tuple[float, dict]:
    """Run the command to completion; (seconds, the JSON summary it printed)."""
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"symkd generate failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, json.loads(proc.stdout)
