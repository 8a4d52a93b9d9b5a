"""Throughput of the OpenAI teacher through the real generation path.

    flock /tmp/symkd-bench.lock python bench/teacher_throughput.py --requests 2000 --concurrency 64 --latency-ms 200
    flock /tmp/symkd-bench.lock python bench/teacher_throughput.py --requests 4000 --concurrency 256 --latency-ms 200
    flock /tmp/symkd-bench.lock python bench/teacher_throughput.py --requests 4000 --concurrency 256 --via cli

Starts the loopback fake server (``symkd.testing.openai_server``) in its own process with a
fixed per-request latency, then answers ``--requests`` distinct chat requests with the
``openai`` backend through :func:`symkd.generate` — preflight, run bookkeeping, the SQLite
cache writing every response, the progress bar — or, with ``--via cli``, through the
``symkd generate`` command in a subprocess (the wall time then includes interpreter start-up
and imports). With a server latency of L seconds and C requests in flight, no client can do
better than C / L requests a second; ``efficiency`` is the achieved rate over that ideal.

Prints one JSON line and records it in BENCHMARKS.md (section ``teacher_throughput_c<C>``,
or ``teacher_throughput_cli`` for ``--via cli``; ``--no-record`` only prints).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _record import record  # noqa: E402

from symkd.testing.launch import start_fake_server  # noqa: E402

FAKE_KEY = "sk-bench-not-a-real-key-000000"
#: the ordinary disk (not tmpfs): the system temp folder (ext4 on the machines measured here)
DISK_DIR = None


def db_location(choice: str, run: int = 0) -> tuple[Path, Path | None]:
    """``disk`` (a folder on the ordinary disk, the default: where users keep their data),
    ``shm`` (tmpfs, which flatters the write path) or a new file path.

    Returns the database path and the temporary folder to remove afterwards (None for a path
    the user chose; runs after the first get ``NAME-2.db``, ``NAME-3.db``, ...).
    """
    if choice in {"shm", "disk"}:
        parent = "/dev/shm" if choice == "shm" and os.path.isdir("/dev/shm") else DISK_DIR
        folder = Path(tempfile.mkdtemp(prefix="symkd-bench-", dir=parent))
        return folder / "bench.db", folder
    path = Path(choice)
    if run:
        path = path.with_name(f"{path.stem}-{run + 1}{path.suffix}")
    if path.exists():
        raise SystemExit(f"{path}: exists; give a new file so every request goes to the server")
    return path, None


def chat_lines(count: int) -> list[dict]:
    """Distinct small chat requests (distinct inputs, so nothing is answered from the cache)."""
    return [
        {"id": f"q{i}", "messages": [{"role": "user", "content": f"Explain item number {i} in one line."}]}
        for i in range(count)
    ]


def import_seconds() -> float:
    """What importing symkd and the openai backend costs a fresh interpreter (median of 3)."""
    code = (
        "import time; t = time.perf_counter(); import aiohttp, symkd, symkd.teachers.openai_api; "
        "print(time.perf_counter() - t)"
    )
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                 check=True).stdout) for _ in range(3)]  # fmt: skip
    return sorted(runs)[1]


def run_api(base_url: str, lines: list[dict], concurrency: int, db: Path) -> dict:
    """One ``symkd.generate`` call in this process, with the libraries already imported."""
    import aiohttp  # noqa: F401  (what the backend's transport imports on first use)

    import symkd
    import symkd.teachers.openai_api  # noqa: F401
    from symkd.teachers.messages import GenerationParams, Request

    params = GenerationParams(max_tokens=16)
    requests = [Request(id=line["id"], messages=line["messages"], params=params) for line in lines]
    began = time.perf_counter()
    summary = symkd.generate("openai:fake", requests, db, base_url=base_url, concurrency=concurrency)
    seconds = time.perf_counter() - began
    return {**summary.as_dict(), "seconds": seconds}


def run_cli(base_url: str, lines: list[dict], concurrency: int, db: Path) -> dict:
    prompts = db.with_suffix(".jsonl")
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cmd = [
        sys.executable, "-m", "symkd.cli", "generate", "--teacher", "openai:fake", "--prompts", str(prompts),
        "--db", str(db), "--base-url", base_url, "--concurrency", str(concurrency), "--max-tokens", "16", "--json",
    ]  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY}
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"symkd generate failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**summary, "seconds": seconds, "in_process_seconds": summary["seconds"]}


def measure(args: argparse.Namespace, lines: list[dict], run: int) -> dict:
    """One run against a fresh server and a fresh database."""
    db, folder = db_location(args.db, run)
    server = start_fake_server("--latency-ms", str(args.latency_ms))
    load = round(os.getloadavg()[0], 2)  # other work on the machine skews the figure: say how much
    try:
        runner = run_cli if args.via == "cli" else run_api
        out = runner(server.base_url, lines, args.concurrency, db)
    finally:
        server.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if out["done"] != args.requests or out["failed"]:
        raise SystemExit(f"expected {args.requests} answers, got done={out['done']} failed={out['failed']}")
    return {**out, "load_avg_1m": load}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--via", choices=["api", "cli"], default="api", help="symkd.generate in process, or the CLI")
    parser.add_argument("--db", default="disk", help="disk (default: the temp folder on disk), shm (tmpfs) or a new file path")
    parser.add_argument("--name", default=None, help="BENCHMARKS.md section (default from --via/--concurrency)")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median is reported, with the best")
    parser.add_argument("--no-record", action="store_true", help="print the JSON line only")
    args = parser.parse_args(argv)

    os.environ.setdefault("OPENAI_API_KEY", FAKE_KEY)
    lines = chat_lines(args.requests)
    latency_s = args.latency_ms / 1000.0
    ideal = min(args.concurrency, args.requests) / latency_s if latency_s else float("inf")
    runs = [measure(args, lines, run) for run in range(args.repeat)]
    ranked = sorted(runs, key=lambda out: out["seconds"])
    out = ranked[len(ranked) // 2]  # the median run (the upper one of an even count)
    achieved = args.requests / out["seconds"]
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "latency_s": latency_s,
        "via": args.via,
        "db": args.db if args.db in {"shm", "disk"} else "file",
        "seconds": round(out["seconds"], 3),
        "achieved_rps": round(achieved, 1),
        "ideal_rps": round(ideal, 1),
        "efficiency": round(achieved / ideal, 3) if latency_s else None,
    }
    if args.repeat > 1:
        best = args.requests / ranked[0]["seconds"]
        result["repeats"] = args.repeat
        result["best_rps"] = round(best, 1)
        result["best_efficiency"] = round(best / ideal, 3) if latency_s else None
        result["all_rps"] = [round(args.requests / r["seconds"], 1) for r in runs]
    result["load_avg_1m"] = [r["load_avg_1m"] for r in runs]
    if args.via == "api":
        result["import_s"] = round(import_seconds(), 3)
    else:
        result["in_process_seconds"] = out["in_process_seconds"]
    cli_name = "teacher_throughput_cli" if args.concurrency == 64 else f"teacher_throughput_cli_c{args.concurrency}"
    name = args.name or (cli_name if args.via == "cli" else f"teacher_throughput_c{args.concurrency}")
    title = f"OpenAI teacher throughput ({args.via}, concurrency {args.concurrency}, {args.latency_ms:g} ms server)"
    if args.via == "cli":
        scope = (
            "`seconds` is the wall time of the `symkd generate` subprocess: interpreter start-up, imports, "
            "reading the JSONL, preflight, run bookkeeping, every response written to SQLite, the progress "
            "bar; `in_process_seconds` is the command's own figure for the generate call."
        )
    else:
        scope = (
            "`seconds` is the wall time of one `symkd.generate` call (teacher construction, preflight, "
            "run bookkeeping, every response written to SQLite, the progress bar) with the libraries "
            "already imported; `import_s` is what those imports cost first."
        )
    notes = (
        f"Command: `python bench/teacher_throughput.py {' '.join(sys.argv[1:])}` (the line above names "
        "the section, not the script). "
        "Fake OpenAI server (symkd.testing.openai_server) in its own process on the same machine. "
        + scope
        + " ideal_rps = min(concurrency, requests) / latency_s; efficiency = achieved_rps / ideal_rps."
        + " With --repeat N the median run is reported (best_* is the fastest); load_avg_1m is the"
        " machine's 1-minute load average as each run began (2 cores: above ~2 means other work"
        " was competing for the CPU)."
    )
    record(name, result, title=title, notes=notes, write=not args.no_record)
    return result


if __name__ == "__main__":
    main()
