"""``symkd sandbox exec``: run one Python file (or stdin) in the sandbox, print one JSON object.

    symkd sandbox exec --timeout 5 --memory-mb 256 script.py
    echo 'print(6*7)' | symkd sandbox exec -
    symkd sandbox exec --sandbox rlimit script.py     # no bubblewrap: limits only (weaker)
    symkd sandbox exec --work-mb 64 script.py         # a smaller working directory (a tmpfs)

The JSON has ``stdout``, ``stderr``, ``error``, ``timed_out``, ``exit_code``, ``final_answer``,
``is_final``, ``worker_died``, ``seconds`` and ``mode``. The exit status is 0 whenever the code
ran, whatever it did (timed out, died, broke the sandbox's protocol: ``error`` says so); bad
input (missing file, unknown mode, no bwrap) is a UserError. The JSON is ASCII: terminal escapes
model code printed arrive escaped, never raw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from symkd.errors import UserError

FIELDS = ("stdout", "stderr", "error", "timed_out", "exit_code", "final_answer", "is_final",
          "worker_died", "seconds")


def read_code(file: str) -> str:
    """The program text: a file, or stdin for ``-``."""
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    if not path.is_file():
        raise UserError(f"{file}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read ({exc})") from None


def exec_once(code: str, timeout: float, memory_mb: int, mode: str, work_mb: int = 256) -> dict:
    """Run ``code`` as the only step of a fresh sandbox; the result as a JSON-able dict."""
    from symkd.sandbox import Sandbox, SandboxLimits

    if timeout <= 0 or memory_mb <= 0 or work_mb <= 0:
        raise UserError("--timeout, --memory-mb and --work-mb must be positive")
    limits = SandboxLimits(step_timeout=timeout, memory_mb=memory_mb, cpu_seconds=max(1, int(timeout) + 1),
                           work_mb=work_mb)  # fmt: skip
    with Sandbox(limits=limits, mode=mode) as sb:
        result = sb.run(code).to_dict()
    out = {key: result[key] for key in FIELDS}
    out["mode"] = mode
    return out


def register(app: typer.Typer) -> None:
    """Add the ``sandbox`` command group (``exec``) to ``app``."""
    group = typer.Typer(help="Run model-written Python in the OS sandbox.", no_args_is_help=True)

    @group.command("exec")
    def exec_cmd(
        file: str = typer.Argument(..., help="Python file to run, or - for stdin"),
        timeout: float = typer.Option(10.0, "--timeout", help="wall-clock seconds"),
        memory_mb: int = typer.Option(512, "--memory-mb", help="address-space limit (MiB)"),
        work_mb: int = typer.Option(256, "--work-mb", help="size of the working directory, a tmpfs (MiB; bwrap only)"),
        sandbox: str = typer.Option("bwrap", "--sandbox", help="bwrap (isolated) | rlimit (limits only, weaker)"),
    ) -> None:
        """Run FILE once in a fresh sandbox and print one JSON object."""
        code = read_code(file)
        typer.echo(json.dumps(exec_once(code, timeout, memory_mb, sandbox, work_mb)))

    app.add_typer(group, name="sandbox")
