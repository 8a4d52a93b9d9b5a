"""Start the loopback fake OpenAI server in its own process (tests and benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass


@dataclass
class RunningServer:
    proc: subprocess.Popen
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict:
        """``{"total": N, "by_body": {digest: count}}`` as counted by the server."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_fake_server(*args: str) -> RunningServer:
    """Run ``python -m symkd.testing.openai_server --port 0 ARGS...`` and wait for READY."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "symkd.testing.openai_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line.strip()}")
    return RunningServer(proc, int(line.split()[1]))
