"""Sandbox start-up time, per-step overhead (trivial steps), fork time and a tool round trip,
for the bwrap and rlimit modes. Target: per-step overhead under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _record import record  # noqa: E402

from symkd.sandbox import Sandbox  # noqa: E402
from symkd.sandbox.launch import find_bwrap  # noqa: E402


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def measure(mode: str, steps: int, starts: int) -> dict:
    """Median start-up over ``starts`` sandboxes; mean/p95 over ``steps`` trivial steps."""
    startup = []
    for _ in range(starts):
        began = time.perf_counter()
        box = Sandbox(mode=mode, tools={"echo": lambda s: s})
        startup.append(time.perf_counter() - began)
        box.close()
    with Sandbox(mode=mode, tools={"echo": lambda s: s}) as box:
        box.run("x = 0")
        per_step = []
        for _ in range(steps):
            began = time.perf_counter()
            box.run("x += 1")
            per_step.append(time.perf_counter() - began)
        assert box.run("print(x)").stdout == f"{steps}\n"
        began = time.perf_counter()
        tool = [box.run("echo('a')") for _ in range(50)]
        tool_s = (time.perf_counter() - began) / len(tool)
        forks, closes = [], []
        for _ in range(10):
            began = time.perf_counter()
            child = box.fork()
            forks.append(time.perf_counter() - began)
            began = time.perf_counter()
            child.close()  # kills the fork and sweeps the container for processes it left
            closes.append(time.perf_counter() - began)
    per_step.sort()
    return {
        f"{mode}.startup_ms": ms(statistics.median(startup)),
        f"{mode}.step_mean_ms": ms(statistics.mean(per_step)),
        f"{mode}.step_p95_ms": ms(per_step[int(len(per_step) * 0.95) - 1]),
        f"{mode}.tool_step_ms": ms(tool_s),
        f"{mode}.fork_ms": ms(statistics.median(forks)),
        f"{mode}.fork_close_ms": ms(statistics.median(closes)),
    }


def uptime() -> str:
    """`uptime`'s load averages (1, 5, 15 min): the machine is shared with other jobs."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    result: dict = {"steps": args.steps, "starts": args.starts, "uid": os.getuid(), "load_at_start": uptime()}
    modes = (["bwrap"] if find_bwrap() else []) + ["rlimit"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for mode in modes:
            result.update(measure(mode, args.steps, args.starts))
    result["load_at_end"] = uptime()
    result["target_step_under_50ms"] = all(v < 50 for k, v in result.items() if k.endswith("step_mean_ms"))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    record("sandbox", result, title="Sandbox (bench/sandbox.py)", write=not args.no_write, notes=(
        "Start-up: `Sandbox(...)` to first worker ready (bwrap + zygote with its seccomp filter + "
        "worker hello), median. Step: one `run('x += 1')` round trip (socket + pipes + exec, every "
        "frame checked: size, nesting, schema, types; output cleaned) over the steps; tool step: a "
        "step that calls one host tool; fork: `Sandbox.fork()` of a warm worker, median of 10; "
        "fork close: closing that fork (kill, sweep of the container's processes through /proc, "
        "workdir removal), median of 10. Running as root, so each container runs as a uid of its "
        "own. The machine is shared: `load_at_start` / `load_at_end` are `uptime`'s 1/5/15-minute "
        "load averages around the run."
    ))


if __name__ == "__main__":
    main()
