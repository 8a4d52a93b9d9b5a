"""Sandbox behaviour: state, forks, tools, final_answer, restarts, modes, the CLI command."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from symkd.errors import UserError
from symkd.sandbox import Sandbox, SandboxError, SandboxLimits, check_available
from symkd.sandbox.cli import register
from symkd.sandbox.launch import find_bwrap

HAVE_BWRAP = sys.platform == "linux" and find_bwrap() is not None
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap (apt-get install bubblewrap)")
FAST = SandboxLimits(step_timeout=5.0, cpu_seconds=5)


@pytest.fixture
def sb():
    if not HAVE_BWRAP:
        pytest.skip("needs bubblewrap")
    with Sandbox(limits=FAST, tools={"search": lambda q, k=1: f"{k} hit(s) for {q}", "boom": _boom}) as box:
        yield box


def _boom(*_args):
    raise ValueError("index offline")


def test_state_persists_across_steps(sb):
    assert sb.run("x = 2\nimport math").error is None
    r = sb.run("print(x * 21, math.sqrt(16))")
    assert r.stdout == "42 4.0\n" and r.error is None and not r.is_final and r.exit_code is None


def test_final_answer_ends_the_step_and_is_stringified(sb):
    sb.run("x = 2")
    r = sb.run("try:\n    final_answer(x * 21)\nexcept Exception:\n    print('swallowed')\nprint('after')")
    assert r.is_final and r.final_answer == "42" and r.stdout == ""
    assert sb.run("final_answer({'a': [1, 2]})").final_answer == '{"a": [1, 2]}'
    assert sb.run("final_answer('plain text')").final_answer == "plain text"


def test_tools_round_trip_through_the_parent(sb):
    r = sb.run("out = search('cats', k=3)\nprint(type(out).__name__, out)")
    assert r.stdout == "str 3 hit(s) for cats\n"
    assert r.tool_calls == [{"name": "search", "args": ["cats"], "kwargs": {"k": 3}, "result": "3 hit(s) for cats"}]
    r = sb.run("try:\n    boom(1)\nexcept ToolError as exc:\n    print('caught', exc)")
    assert r.stdout == "caught ValueError: index offline\n" and r.tool_calls[0]["error"].startswith("ValueError")
    r = sb.run("boom()")
    assert "ToolError: ValueError: index offline" in r.error


@needs_bwrap
def test_tools_run_in_the_parent_process():
    import os

    seen = []
    with Sandbox(limits=FAST, tools={"whoami": lambda: seen.append(os.getpid()) or str(os.getuid())}) as box:
        r = box.run("print(whoami(), __import__('os').getuid())")
    assert seen == [os.getpid()] and r.stdout == f"{os.getuid()} {box.uid}\n"
    assert box.uid != 0


def test_errors_are_model_facing_tracebacks(sb):
    r = sb.run("def f():\n    return 1 / 0\nf()")
    assert r.error.startswith("Traceback") and "ZeroDivisionError" in r.error
    assert "_worker" not in r.error and 'File "<step>", line 2, in f' in r.error
    assert "SyntaxError" in sb.run("def (:").error
    assert sb.run("import sys\nsys.exit(3)").exit_code == 3
    assert sb.run("print('still here')").stdout == "still here\n"


def test_dead_worker_is_reported_then_restarted(sb):
    sb.run("keep = 1")
    r = sb.run("import os\nprint('bye', flush=True)\nos._exit(7)")
    assert r.worker_died and r.exit_code == 7 and r.stdout == "bye\n" and "state is lost" in r.error
    after = sb.run("print('keep' in globals())")
    assert after.restarted and after.stdout == "False\n"


def test_fork_isolates_state_both_ways(sb):
    sb.run("x = 2\nopen('f.txt', 'w').write('parent')")
    child = sb.fork()
    try:
        assert child.run("print(x)").stdout == "2\n"
        child.run("x = 5\nopen('f.txt', 'w').write('child')")
        assert sb.run("print(x, open('f.txt').read())").stdout == "2 parent\n"
        sb.run("x = 7")
        assert child.run("print(x, open('f.txt').read())").stdout == "5 child\n"
        assert child.workdir != sb.workdir
        assert child.run("print(search('dogs'))").stdout == "1 hit(s) for dogs\n"
    finally:
        child.close()
    assert sb.run("print(x)").stdout == "7\n"


def test_many_forks_then_keep_the_winner(sb):
    sb.run("base = 10")
    forks = [sb.fork() for _ in range(16)]
    for i, fork in enumerate(forks):
        assert fork.run(f"base += {i}\nprint(base)").stdout == f"{10 + i}\n"
    winner = forks.pop(7)
    for fork in forks:
        fork.close()
    sb.close()  # the episode's first worker goes; the winner's container stays up
    assert winner.run("print(base)").stdout == "17\n"
    grandchild = winner.fork()
    assert grandchild.run("print(base + 1)").stdout == "18\n"
    grandchild.close()
    winner.close()


def test_closed_sandbox_refuses_to_run(sb):
    sb.close()
    with pytest.raises(SandboxError):
        sb.run("1")


def test_rlimit_mode_runs_and_warns():
    with pytest.warns(RuntimeWarning, match="rlimit"):
        box = Sandbox(limits=FAST, mode="rlimit", tools={"echo": lambda s: s.upper()})
    with box:
        r = box.run("import os\nx = 3\nprint(os.getuid() != 0, echo('hi'), sorted(os.environ))")
        assert r.stdout.startswith("True HI") and "OPENAI_API_KEY" not in r.stdout
        child = box.fork()
        assert child.run("x += 1\nprint(x)").stdout == "4\n"
        child.close()
        assert box.run("print(x)").stdout == "3\n"


def test_rlimit_mode_worker_sees_the_stdlib_not_symkds_modules():
    """Started in place, the worker's own folder (symkd/sandbox, with a types.py) came first on
    sys.path: in a virtualenv whose start-up had not imported ``types`` yet, the sandbox failed."""
    import types

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Sandbox(limits=FAST, mode="rlimit") as box:
            r = box.run("import sys, types\nprint(sys.path[0])\nprint(types.__file__)")
    first, types_file = r.stdout.splitlines()
    assert not (Path(first) / "types.py").exists() and not (Path(first) / "_worker.py").exists()
    assert types_file == types.__file__


def test_rlimit_mode_timeout_kills_the_worker():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Sandbox(limits=SandboxLimits(step_timeout=1.0), mode="rlimit") as box:
            r = box.run("while True:\n    pass")
            assert r.timed_out and r.exit_code == -9
            assert box.run("print(1)").stdout == "1\n"


def test_missing_bwrap_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setenv("SYMKD_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(UserError, match="apt-get install bubblewrap") as info:
        Sandbox()
    assert "\n" not in str(info.value) and "rlimit" in str(info.value)
    with pytest.raises(UserError):
        check_available("bwrap", bwrap="/nonexistent")
    with pytest.raises(UserError, match="unknown sandbox mode"):
        check_available("docker")
    assert check_available("rlimit") is None


def test_bad_tool_names_are_refused():
    with pytest.raises(UserError):
        Sandbox(tools={"final_answer": str})


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Throwaway root so ``sandbox`` stays a subcommand."""

    register(app)
    return app


@needs_bwrap
def test_cli_exec_prints_one_json_object(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print(6 * 7)\nimport sys\nsys.stderr.write('warn')\n")
    result = CliRunner().invoke(_cli(), ["sandbox", "exec", "--timeout", "5", "--memory-mb", "256", str(script)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["stdout"] == "42\n" and out["stderr"] == "warn" and out["error"] is None
    assert out["timed_out"] is False and out["exit_code"] is None and out["mode"] == "bwrap"
    looped = CliRunner().invoke(_cli(), ["sandbox", "exec", "--timeout", "1", "-"], input="while True: pass\n")
    assert json.loads(looped.stdout)["timed_out"] is True


def test_cli_missing_file_is_a_user_error(tmp_path):
    result = CliRunner().invoke(_cli(), ["sandbox", "exec", str(tmp_path / "nope.py")])
    assert isinstance(result.exception, UserError) and "no such file" in str(result.exception)
    wrapper = (
        "import sys, typer\nfrom symkd.errors import UserError\nfrom symkd.sandbox.cli import register\n"
        "app = typer.Typer()\napp.callback()(lambda: None)\nregister(app)\n"
        "try:\n    app(args=sys.argv[1:], standalone_mode=False)\n"
        "except UserError as exc:\n    print(f'symkd: error: {exc}', file=sys.stderr); sys.exit(2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, "sandbox", "exec", str(tmp_path / "nope.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1


def test_sandbox_is_a_core_module():
    code = ("import sys, symkd.sandbox, symkd.sandbox.cli\n"
            "bad = [m for m in sys.modules if m.startswith(('symkd.pipelines', 'symkd.cli', 'symkd.store'))]\n"
            "print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
