"""Replaying a finished run from the cache vs the first run (target: ratio <= 0.05).

Both runs go through the real CLI (`symkd generate`, start-up included) against the loopback
fake OpenAI server answering after ``--latency-ms``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli_run import generate_cmd, timed_run, write_prompts  # noqa: E402
from _record import record  # noqa: E402

from symkd.testing.launch import start_fake_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_fake_server("--latency-ms", str(args.latency_ms)) as server:
        prompts = write_prompts(Path(tmp) / "p.jsonl", args.requests)
        cmd = generate_cmd(server.base_url, prompts, Path(tmp) / "run.db", args.concurrency)
        first_s, first = timed_run(cmd)
        replay_s, replay = timed_run(cmd)
        sent = server.stats()["total"]
    assert first["done"] == args.requests and replay["cached"] == args.requests, (first, replay)
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "latency_s": args.latency_ms / 1000,
        "first_run_s": round(first_s, 3),
        "replay_s": round(replay_s, 3),
        "ratio": round(replay_s / first_s, 4),
        "requests_sent_to_server": sent,
        "target_ratio": 0.05,
    }
    record(
        "cache_replay",
        result,
        title="Cache replay vs first run",
        notes="Both runs through the `symkd generate` CLI (process start-up included) against the loopback "
        "fake server; the replay sends nothing to the server except one `/models` preflight.",
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
