"""Start-up of the ``symkd`` command (target: <= 0.3 s for ``--help``, completion and a cached replay).

Each case runs N times in a fresh subprocess; the table gives the median and the minimum wall
time (the minimum is the one to compare on a busy machine). Also: the 10 largest cumulative
imports of ``symkd --help`` (``python -X importtime``). Writes ``bench/results/cli_startup.json``.

    python bench/cli_startup.py [--repeats 7] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli_run import generate_cmd, write_prompts  # noqa: E402

from symkd.testing.launch import start_fake_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cli_startup.json"
TARGET_S = 0.3
CLI = [sys.executable, "-m", "symkd.cli"]


def _wall(cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds


def _timed(cmd: list[str], repeats: int, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    runs = [_wall(cmd, env, ok) for _ in range(repeats)]
    return {"median_s": round(statistics.median(runs), 3), "min_s": round(min(runs), 3), "runs": len(runs)}


def top_imports(args: list[str], n: int = 10) -> list[dict]:
    """The ``n`` largest cumulative import times (microseconds) of ``symkd ARGS``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "symkd.cli", *args], capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            self_us, cumulative_us, name = line[len("import time:"):].split("|")
            rows.append({"module": name.strip(), "cumulative_us": int(cumulative_us), "self_us": int(self_us)})
    return sorted(rows, key=lambda r: -r["cumulative_us"])[:n]


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "load_1min": load}


def _completion_env() -> dict[str, str]:
    return {**os.environ, "_SYMKD_COMPLETE": "complete_bash", "COMP_WORDS": "symkd ge", "COMP_CWORD": "1"}


def measure(repeats: int, requests: int) -> dict:
    script = Path(sys.executable).with_name("symkd")  # the console script, as a shell runs it
    completion = [str(script)] if script.exists() else CLI
    cases = {
        "--version": _timed([*CLI, "--version"], repeats),
        "--help": _timed([*CLI, "--help"], repeats),
        "generate --help": _timed([*CLI, "generate", "--help"], repeats),
        "completion (symkd ge<TAB>)": _timed(completion, repeats, _completion_env(), ok=(0, 1)),  # 1: a symkd without completion
    }
    with tempfile.TemporaryDirectory() as tmp, start_fake_server("--latency-ms", "0") as server:
        prompts = write_prompts(Path(tmp) / "p.jsonl", requests)
        cmd = generate_cmd(server.base_url, prompts, Path(tmp) / "run.db", 32)
        first_s = _wall(cmd)
        cases[f"cached replay ({requests} answers)"] = _timed(cmd, repeats)
        cases[f"cached replay ({requests} answers)"]["first_run_s"] = round(first_s, 3)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS, help="the JSON file written")
    args = ap.parse_args()
    before = machine()
    cases = measure(args.repeats, args.requests)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**before, "load_1min_after": os.getloadavg()[0]},
        "target_s": TARGET_S,
        "cases": {name: {**row, "meets_target_by_min": row["min_s"] <= TARGET_S} for name, row in cases.items()},
        "python_baseline_s": _timed([sys.executable, "-c", "pass"], args.repeats),
        "top_imports_help": top_imports(["--help"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'case':40} {'median s':>9} {'min s':>7}  <= {TARGET_S}s")
    for name, row in result["cases"].items():
        print(f"{name:40} {row['median_s']:9.3f} {row['min_s']:7.3f}  {'yes' if row['meets_target_by_min'] else 'NO'}")
    print(f"{'python -c pass':40} {result['python_baseline_s']['median_s']:9.3f} {result['python_baseline_s']['min_s']:7.3f}")
    print("top imports of --help (cumulative ms):")
    for row in result["top_imports_help"]:
        print(f"  {row['cumulative_us'] / 1000:8.1f}  {row['module']}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
