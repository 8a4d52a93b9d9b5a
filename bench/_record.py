"""Shared by the benchmarks: print the result as one JSON line and record it in BENCHMARKS.md.

Each benchmark owns one section of BENCHMARKS.md, between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; rerunning a benchmark replaces its section (written atomically,
under a file lock so benchmarks run side by side do not clobber each other).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_MD = ROOT / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEach section is written by the benchmark named in it (`python bench/NAME.py`).\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}, {platform.system()}"


def record(name: str, result: dict, *, title: str, notes: str = "", write: bool = True) -> None:
    """Print ``result`` as JSON and (if ``write``) replace this benchmark's BENCHMARKS.md section."""
    print(json.dumps(result), flush=True)
    if not write:
        return
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"`python bench/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`".rstrip() + "\n\n"
        f"Measured {stamp} on {machine()}.\n\n| metric | value |\n|---|---|\n{rows}\n"
        + (f"\n{notes.strip()}\n" if notes.strip() else "")
        + f"<!-- /bench:{name} -->\n"
    )
    lock_path = BENCH_MD.with_suffix(".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = BENCH_MD.read_text() if BENCH_MD.exists() else HEADER
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
        tmp = BENCH_MD.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, BENCH_MD)
    try:
        lock_path.unlink()
    except OSError:
        pass
