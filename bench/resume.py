"""kill -9 at about 50 %, resume; total time vs an uninterrupted run, lost and duplicated items.

Targets: total / uninterrupted <= 1.10, lost == 0, duplicated == 0.
"""

from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli_run import generate_cmd, timed_run, write_prompts  # noqa: E402
from _record import record  # noqa: E402

from symkd.testing.launch import start_fake_server  # noqa: E402


def ok_count(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        return conn.execute("select count(*) from responses where status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, start_fake_server("--latency-ms", str(args.latency_ms)) as server:
        tmp_path = Path(tmp)
        prompts = write_prompts(tmp_path / "p.jsonl", args.requests)
        plain_s, _ = timed_run(generate_cmd(server.base_url, prompts, tmp_path / "plain.db", args.concurrency))

        db = tmp_path / "killed.db"
        cmd = generate_cmd(server.base_url, prompts, db, args.concurrency)
        before = server.stats()["total"]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while ok_count(db) < args.requests // 2:
            if proc.poll() is not None:
                raise SystemExit("the run ended before it could be killed")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_s = time.perf_counter() - began
        at_kill = ok_count(db)
        resume_s, summary = timed_run(cmd)
        sent = server.stats()["total"] - before
        conn = sqlite3.connect(db)
        ok_items = conn.execute(
            "select count(*) from run_items i join responses r on r.key = i.request_key where r.status = 'ok'"
        ).fetchone()[0]
        rows = conn.execute("select count(*) from responses").fetchone()[0]
        distinct = conn.execute("select count(distinct text) from responses").fetchone()[0]
        conn.close()
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "latency_s": args.latency_ms / 1000,
        "uninterrupted_s": round(plain_s, 3),
        "killed_after_s": round(killed_s, 3),
        "done_at_kill": at_kill,
        "resume_s": round(resume_s, 3),
        "total_s": round(killed_s + resume_s, 3),
        "ratio": round((killed_s + resume_s) / plain_s, 4),
        "lost": args.requests - ok_items,
        "duplicated": rows - distinct,
        "resent_after_kill": sent - args.requests,
        "resumed_summary": summary,
    }
    record(
        "resume",
        result,
        title="kill -9 at 50 % and resume",
        notes="Through the `symkd generate` CLI against the loopback fake server. `resent_after_kill` counts "
        "requests that were in flight or not yet committed when the process died and were asked again "
        "(work redone, not duplicated: the store keeps one row per request key).",
        write=not args.no_write,
    )


if __name__ == "__main__":
    main()
