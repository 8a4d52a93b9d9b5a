"""Hostile model code through the real commands: ``sandbox exec``, ``agent generate`` and
``agent eval`` (a scripted LangChain teacher writes the code) keep running and record the error;
interrupted runs leave nothing behind. The sandbox-level cases are in test_sandbox_hostile.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from symkd.sandbox.launch import UID_BASE, find_bwrap
from symkd.sandbox.text import _UNSAFE
from tests.procs import cmd
from tests.test_agents_units import run_cli

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or find_bwrap() is None, reason="needs Linux and bubblewrap (apt-get install bubblewrap)"
)
ROOT = Path(__file__).resolve().parent.parent
FORGE = "import __main__, json, struct, time\nch = __main__._CURRENT[0].ch\nme = __main__._CURRENT[0].pid\n" \
        "def raw(data):\n    ch.sendall(struct.pack('>I', len(data)) + data)\n"  # fmt: skip
#: question marker -> the code the scripted teacher answers with
CASES = {
    "surrogate": "final_answer(chr(0xd800))",
    "escapes": "print('\\x1b]52;c;aGk=\\x07\\x00')\nfinal_answer('\\x1b[2J' + chr(0xdfff))",
    "exits-str": FORGE + "raw(json.dumps({'op': 'exits', 'items': [[me, 'x']]}).encode())\ntime.sleep(5)",
    "exits-range": FORGE + "raw(json.dumps({'op': 'exits', 'items': [[me, 99999]]}).encode())\ntime.sleep(5)",
    "nested": FORGE + "raw(b'[' * 100000 + b']' * 100000)\ntime.sleep(5)",
    "trickle": FORGE + "ch.sendall(struct.pack('>I', 40))\nfor _ in range(40):\n    ch.sendall(b' ')\n    time.sleep(1)",
}


class Scripted(FakeListChatModel):
    """Answers each step with the code of the CASE named in the question."""

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[override]
        text = "\n".join(str(m.content) for m in messages)
        case = next(name for name in CASES if f"CASE:{name}." in text)
        return f"Thought: run it.\n```python\n{CASES[case]}\n```"


def make_teacher() -> Scripted:
    return Scripted(responses=["unused"])


SPEC = "langchain:tests.test_sandbox_hostile_cli:make_teacher"


def _tasks(path: Path, names) -> Path:
    path.write_text("".join(json.dumps({"question": f"CASE:{n}. What is it?", "answer": "#### 1"}) + "\n" for n in names))
    return path


def _safe(value) -> None:
    """Every string in ``value`` encodes and holds no control character but tab/newline."""
    if isinstance(value, str):
        value.encode("utf-8")
        assert not _UNSAFE.search(value), repr(value[:80])
    elif isinstance(value, dict):
        for k, v in value.items():
            _safe(k), _safe(v)
    elif isinstance(value, list):
        for v in value:
            _safe(v)


def test_sandbox_exec_reports_each_case_and_prints_ascii(tmp_path):
    for name, code in CASES.items():
        script = tmp_path / f"{name}.py"
        script.write_text(code, encoding="utf-8")
        proc = subprocess.run(cmd("sandbox", "exec", "--timeout", "2", str(script)), capture_output=True, timeout=60, cwd=ROOT)
        assert proc.returncode == 0, (name, proc.stderr[-500:])
        assert proc.stdout.isascii() and b"\x1b" not in proc.stdout and proc.stdout.count(b"\n") == 1, name
        out = json.loads(proc.stdout)
        _safe(out)
        if name.startswith(("exits", "nested")):
            assert "broke the protocol" in out["error"], (name, out)
        if name == "trickle":
            assert out["timed_out"] and out["seconds"] < 4
    script = tmp_path / "fill.py"
    script.write_text("try:\n    for i in range(8):\n        open(f'f{i}', 'wb').write(b'x' * (6 << 20))\n"
                      "except OSError as exc:\n    print('full', i, exc.errno)")  # fmt: skip
    proc = subprocess.run(cmd("sandbox", "exec", "--work-mb", "16", str(script)), capture_output=True, timeout=60, cwd=ROOT)
    assert json.loads(proc.stdout)["stdout"] == "full 2 28\n"  # ENOSPC in the third 6 MiB file


def _rows(db: Path) -> dict[str, dict]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("select question, final_answer, steps from trajectories").fetchall()
    finally:
        conn.close()
    return {q.split(".")[0][5:]: {"final": f, "steps": json.loads(s)} for q, f, s in rows}


def test_agent_generate_records_each_case_and_reruns_from_cache(capsys, tmp_path):
    tasks, db = _tasks(tmp_path / "t.jsonl", CASES), tmp_path / "run.db"
    args = ["agent", "generate", "--teacher", SPEC, "--data", str(tasks), "--db", str(db), "--max-steps", "1", "-q", "--json"]
    for attempt in range(2):  # the second run answers every step from the cache
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err[-2000:]
        assert json.loads(out)["written"] == len(CASES), out
    rows = _rows(db)
    assert set(rows) == set(CASES)
    assert rows["surrogate"]["final"] == "\ufffd"
    for name in ("exits-str", "exits-range", "nested"):
        assert "broke the protocol" in rows[name]["steps"][0]["error"], rows[name]
    assert rows["trickle"]["steps"][0]["timed_out"]
    _safe([r["steps"] for r in rows.values()])
    out_file = tmp_path / "export.jsonl"
    code, _, err = run_cli(capsys, "agent", "export", "--db", str(db), "--out", str(out_file), "--verified", "all")
    assert code == 0, err
    _safe([json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()])


BOMB = "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n            os.setsid(); time.sleep(300); os._exit(0)\nexcept OSError:\n    final_answer(1)"


def test_agent_eval_with_sag_survives_a_fork_bomb(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(CASES, "bomb", BOMB)
    tasks, out = _tasks(tmp_path / "t.jsonl", ["bomb", "surrogate", "exits-str"]), tmp_path / "items.jsonl"
    code, stdout, err = run_cli(capsys, "agent", "eval", "--teacher", SPEC, "--data", str(tasks), "--db", str(tmp_path / "e.db"),
                                "--sag", "3", "--max-steps", "2", "--out", str(out), "--json", "-q")  # fmt: skip
    assert code == 0, err[-2000:]
    assert json.loads(stdout)["items"] == 3
    items = {i["question"].split(".")[0][5:]: i for i in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    _safe(list(items.values()))
    assert items["bomb"]["final_answer"] == "1"
    assert "broke the protocol" in items["exits-str"]["steps"][0]["error"]


# ---------------------------------------------------------------- nothing left behind


def _gold_tasks(path: Path, n: int) -> Path:
    rows = [{"question": f"Ann has {a} bags of {b} pens. How many pens?",
             "answer": f"She has {a}*{b}=<<{a}*{b}={a * b}>>{a * b} pens.\n#### {a * b}"}
            for a, b in ((i % 17 + 2, i // 17 + 3) for i in range(n))]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _owned_uids(pid: int) -> list[int]:
    """Processes running as a uid of a container that process ``pid`` started (root only)."""
    from symkd.sandbox.procs import scan

    base = UID_BASE + ((pid & 0xFFFFF) << 10)
    return [p.pid for p in scan().values() if base <= p.uid < base + 1024 and not p.zombie]


@pytest.fixture
def tmp():
    """An empty TMPDIR the sandboxes' own uids may pass through (rlimit mode's box is in it)."""
    path = Path(tempfile.mkdtemp(prefix="symkd-hostile-", dir="/var/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("mode", ["bwrap", "rlimit"])
def test_interrupted_gold_conversion_leaves_nothing_behind(tmp_path, tmp, mode):
    data = _gold_tasks(tmp_path / "train.jsonl", 3000)
    env = {**os.environ, "TMPDIR": str(tmp)}
    rng = random.Random(19)
    for attempt in range(4):
        sig = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        proc = subprocess.Popen(cmd("agent", "generate", "--source", "gold-rationales", "--data", str(data), "--db",
                                    str(tmp_path / f"g{attempt}.db"), "--sandbox", mode, "-q"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)  # fmt: skip
        deadline = time.monotonic() + 60
        while not _children(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)  # until its sandbox is up
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, (proc.returncode, err[-1000:])
        time.sleep(0.3)
        assert sorted(os.listdir(tmp)) == [], (attempt, os.listdir(tmp))
        assert _owned_uids(proc.pid) == []


def test_stale_folders_of_dead_owners_are_swept_at_start(tmp):
    tmp_path, env = tmp, {**os.environ, "TMPDIR": str(tmp)}
    hold = "import time, warnings\nwarnings.simplefilter('ignore')\nfrom symkd.sandbox import Sandbox\n" \
           "box = Sandbox(mode='rlimit')\nprint('up', flush=True)\ntime.sleep(60)"  # fmt: skip
    owner = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True)
    assert owner.stdout.readline() == "up\n"
    owner.kill()  # SIGKILL: no cleanup can run
    owner.wait()
    left = [n for n in os.listdir(tmp_path) if n.startswith("symkd-sandbox-")]
    assert len(left) == 1  # what a SIGKILLed owner leaves
    alive = tmp_path / f"symkd-sandbox-{os.getpid()}.{_start_time(os.getpid())}-keep"
    alive.mkdir()  # a live owner's folder stays
    start = "import warnings\nwarnings.simplefilter('ignore')\nfrom symkd.sandbox import Sandbox\nSandbox(mode='rlimit').close()"
    subprocess.run([sys.executable, "-c", start], env=env, cwd=ROOT, check=True, timeout=60)
    assert sorted(os.listdir(tmp_path)) == [alive.name]


def _start_time(pid: int) -> int:
    from symkd.sandbox.tidy import start_time

    return start_time(pid)


@pytest.mark.parametrize("mode", ["bwrap", "rlimit"])
def test_an_uncaught_exception_leaves_nothing_behind(tmp, mode):
    crash = ("import warnings\nwarnings.simplefilter('ignore')\nfrom symkd.sandbox import Sandbox\n"
             f"box = Sandbox(mode={mode!r})\nchild = box.fork()\nbox.run('x = 1')\nraise RuntimeError('boom')")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", crash], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)}, cwd=ROOT)  # fmt: skip
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "RuntimeError: boom" in err
    time.sleep(0.3)
    assert os.listdir(tmp) == [] and _owned_uids(proc.pid) == []


def test_trajectory_rows_with_lone_surrogates_store_and_read_back(tmp_path):
    """Model text that did not come through the sandbox (a teacher's raw answer, a task file)."""
    from symkd.pipelines.agents.tables import read_trajectories, write_trajectories
    from symkd.store.db import Store

    row = {"id": "t1", "source": "teacher", "task_id": "x", "question": "q\ud800", "final_answer": "\udfff",
           "steps": [{"raw": "a\udc80b", "observation": None}], "messages": [{"role": "user", "content": "\ud83d"}]}
    with Store(tmp_path / "r.db") as store:
        assert write_trajectories(store, [row]) == 1
        (back,) = read_trajectories(store)
    assert (back["question"], back["final_answer"], back["steps"][0]["raw"]) == ("q\ufffd", "\ufffd", "a\ufffdb")
    _safe(back)
