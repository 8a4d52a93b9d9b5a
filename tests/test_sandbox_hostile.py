"""Hostile model code against the real bubblewrap sandbox (issue 19): forged and stalled
protocol frames, namespaces, a full disk, escaped processes, fork bombs, and text no encoder
likes. Each test fails if the attack works; the CLI side is in test_sandbox_hostile_cli.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import pytest

from symkd.sandbox import Sandbox, SandboxError, SandboxLimits
from symkd.sandbox.launch import find_bwrap
from symkd.sandbox.seccomp import ARCHES
from symkd.sandbox.text import _UNSAFE
from tests.test_sandbox import uid_pids

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or find_bwrap() is None, reason="needs Linux and bubblewrap (apt-get install bubblewrap)"
)

_ARCH = ARCHES.get(os.uname().machine, (0, 0, 0, {}))
NR = {**_ARCH[3], "clone": _ARCH[1]}  # this machine's syscall numbers
FAST = SandboxLimits(step_timeout=3.0, cpu_seconds=5)
#: model code's handle on its worker's socket (the worker runs as __main__)
FORGE = "import __main__, json, struct, socket, time\nch = __main__._CURRENT[0].ch\nme = __main__._CURRENT[0].pid\n" \
        "def raw(data):\n    ch.sendall(struct.pack('>I', len(data)) + data)\n" \
        "def frame(obj):\n    raw(json.dumps(obj).encode())\n"  # fmt: skip


@pytest.fixture
def sb():
    with Sandbox(limits=FAST, tools={"echo": lambda s="": s}) as box:
        yield box


def assert_recovers(box: Sandbox) -> None:
    after = box.run("print('fresh', 'ch' in globals())")
    assert after.restarted and after.stdout == "fresh False\n" and after.error is None, after


# ---------------------------------------------------------------- the protocol


FORGED = {
    "exits with a string status": "frame({'op': 'exits', 'items': [[me, 'x']]})",
    "exits with a status out of range": "frame({'op': 'exits', 'items': [[me, 10**6]]})",
    "a well-formed exits on a worker channel": "frame({'op': 'exits', 'items': [[me, -9]]})",
    "nested 100000 deep": "raw(b'[' * 100000 + b']' * 100000)",
    "not JSON": "raw(b'{not json')",
    "not UTF-8": "raw(b'{\"op\": \"done\", \"error\": \"\\xff\"}')",
    "NaN": "raw(b'{\"op\": \"tool\", \"name\": \"echo\", \"args\": [NaN], \"kwargs\": {}}')",
    "done with a number for error": "frame({'op': 'done', 'error': 5, 'exit_code': None, 'is_final': False, 'final_answer': None})",
    "done with a huge exit code": "frame({'op': 'done', 'error': None, 'exit_code': 2**40, 'is_final': False, 'final_answer': None})",
    "done with a bool as exit code": "frame({'op': 'done', 'error': None, 'exit_code': True, 'is_final': False, 'final_answer': None})",
    "done with an extra field": "frame({'op': 'done', 'error': None, 'exit_code': None, 'is_final': True, 'final_answer': 'x', 'pid': 1})",
    "a tool call whose args are not a list": "frame({'op': 'tool', 'name': 'echo', 'args': 'x', 'kwargs': {}})",
    "a zygote op": "frame({'op': 'ready', 'uid': 0})",
    "a list, not an object": "raw(b'[1, 2]')",
    "a 16 MiB announcement": "ch.sendall(struct.pack('>I', 16 << 20) + b'x')\ntime.sleep(60)",
    "file descriptors": "socket.send_fds(ch, [struct.pack('>I', 2) + b'{}'], [0, 1, 2])\ntime.sleep(60)",
}


@pytest.mark.parametrize("forge", list(FORGED.values()), ids=list(FORGED))
def test_a_forged_frame_ends_the_step_not_the_run(sb, forge):
    began = time.monotonic()
    r = sb.run(FORGE + forge + "\ntime.sleep(2)")
    assert time.monotonic() - began < 2.5, "the violation was not caught at once"
    assert r.worker_died and "broke the protocol" in r.error and not r.is_final
    assert r.error.encode() and not _UNSAFE.search(r.error)
    assert_recovers(sb)


def test_a_trickled_frame_costs_the_step_its_deadline_and_no_more(sb):
    began = time.monotonic()
    r = sb.run(FORGE + "ch.sendall(struct.pack('>I', 40))\nfor _ in range(40):\n    ch.sendall(b' ')\n    time.sleep(1)")
    took = time.monotonic() - began
    assert r.timed_out and r.worker_died and 2.9 < took < 5, (took, r.error)
    assert_recovers(sb)


def test_a_worker_that_stops_reading_cannot_hold_the_parent():
    tools = {"big": lambda: "x" * 200_000}
    with Sandbox(limits=FAST, tools=tools) as box:
        began = time.monotonic()
        r = box.run(FORGE + "call = json.dumps({'op': 'tool', 'name': 'big', 'args': [], 'kwargs': {}}).encode()\n"
                    "for _ in range(500):\n    raw(call)\ntime.sleep(60)")  # fmt: skip
        assert time.monotonic() - began < FAST.step_timeout + 3
        assert r.worker_died and ("stopped reading" in r.error or r.timed_out), r.error
        assert_recovers(box)


def test_a_forged_exit_status_does_not_kill_a_sibling(sb):
    sb.run("x = 1")
    child = sb.fork()
    try:
        ns = sb.run("import os\nprint(os.getpid())").stdout.strip()
        r = child.run(FORGE + f"frame({{'op': 'exits', 'items': [[{ns}, -9]]}})\ntime.sleep(2)")
        assert "broke the protocol" in r.error
        assert sb.run("print(x)").stdout == "1\n"  # the parent's worker never died
    finally:
        child.close()


def test_model_code_cannot_reach_the_control_channel(sb):
    """The zygote (the exits reporter) is another process: no ptrace, no fd theft, no /proc."""
    r = sb.run(f"VM_READV = {NR['process_vm_readv']}\n" + """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
zygote = os.getppid()
print('ptrace', libc.ptrace(16, zygote, 0, 0), ctypes.get_errno())
pidfd = os.pidfd_open(zygote)
print('getfd', sorted({libc.syscall(438, pidfd, fd, 0) for fd in range(32)}), ctypes.get_errno())
buf = ctypes.create_string_buffer(64)
local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
print('vm_readv', libc.syscall(VM_READV, zygote, local, 1, local, 1, 0), ctypes.get_errno())
try:
    print('fds', os.listdir(f'/proc/{zygote}/fd'))
except OSError as exc:
    print('fds', type(exc).__name__)
""")
    assert r.error is None, r.error
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert lines == {"ptrace": "-1 1", "getfd": "[-1] 1", "vm_readv": "-1 1", "fds": "PermissionError"}, r.stdout


# ---------------------------------------------------------------- limits that hold


def test_no_user_namespaces_and_no_mounts(sb):
    r = sb.run(f"CLONE = {NR['clone']}\n" + """
import ctypes, os, subprocess, threading
p = subprocess.run(['unshare', '-U', '-r', '-m', 'sh', '-c', 'mount -t tmpfs -o size=300m none /tmp && echo MOUNTED'],
                   capture_output=True, text=True)
print('unshare-cli', p.returncode, 'MOUNTED' in p.stdout)
libc = ctypes.CDLL(None, use_errno=True)
print('unshare', libc.unshare(0x10000000), ctypes.get_errno())
pid = libc.syscall(CLONE, 0x10000000 | 0x20000 | 17, 0, 0, 0, 0)
if pid == 0:
    os._exit(0)
print('clone', pid, ctypes.get_errno())
args = ctypes.create_string_buffer(88)
args[0:8] = (0x10000000).to_bytes(8, 'little')
print('clone3', libc.syscall(435, args, 88), ctypes.get_errno())
print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())
t = threading.Thread(target=lambda: None); t.start(); t.join()
print('still', subprocess.run(['true']).returncode)
""")
    assert r.error is None, r.error
    assert r.stdout.splitlines() == ["unshare-cli 1 False", "unshare -1 1", "clone -1 1", "clone3 -1 38", "mount -1 1",
                                     "still 0"], r.stdout  # fmt: skip


def test_tmp_and_workdir_are_capped_tmpfs_not_host_disk():
    limits = SandboxLimits(step_timeout=10.0, cpu_seconds=8, tmp_mb=16, work_mb=32)
    before = set(os.listdir(tempfile.gettempdir()))
    with Sandbox(limits=limits) as box:
        fill = ("import errno, os\ntotal = 0\ntry:\n    for i in range(100):\n"
                "        with open(os.path.join({where!r}, f'f{{i}}'), 'wb') as fh:\n"
                "            for _ in range(4):\n                fh.write(b'x' * (1 << 20)); total += 1\n"
                "except OSError as exc:\n    print(exc.errno == errno.ENOSPC, total)")  # fmt: skip
        for where, cap in (("/tmp", 16), (".", 32)):
            r = box.run(fill.format(where=where))
            full, written = r.stdout.split()
            assert r.error is None and full == "True" and cap - 4 <= int(written) <= cap + 4, (where, r.stdout)
        stat = os.statvfs(box.workdir)
        assert stat.f_blocks * stat.f_frsize == 32 << 20  # the host sees a 32 MiB tmpfs, not its disk
        began = time.monotonic()
        with pytest.raises(SandboxError):
            box.fork()  # no room for a copy of the workdir: the fork fails, the sandbox goes on
        assert time.monotonic() - began < 5  # at once (the half copy's end of the socket closes)
        assert box.run("import os\nprint(len(os.listdir('.')))").stdout.strip().isdigit()
    assert {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("symkd-sandbox")} == set()


def test_closed_forks_leave_their_workdir_behind_no_longer():
    """SAG forks copy the workdir: each closed fork's copy must go, or the box fills up."""
    with Sandbox(limits=SandboxLimits(step_timeout=5.0, cpu_seconds=5, work_mb=16)) as box:
        for i in range(8):
            child = box.fork()
            r = child.run("open('big', 'wb').write(b'x' * (6 << 20))")
            child.close()
            assert r.error is None, (i, r.error)
        time.sleep(0.2)
        r = box.run("import os\nprint(sorted(os.listdir('/sandbox')), os.listdir('/sandbox/.trash'))")
        assert r.stdout.split("] ")[1] == "[]\n" and "'w1'" in r.stdout, r.stdout


def _container_pids(box: Sandbox, wait: float) -> list[int]:
    deadline = time.monotonic() + wait
    while len(uid_pids(box.uid)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return uid_pids(box.uid)


ESCAPES = """
import os, subprocess
subprocess.Popen(['sleep', '300'], start_new_session=True)  # setsid: out of the worker's group
if os.fork() == 0:  # a double-forked daemon, reparented to the zygote
    os.setsid()
    if os.fork() == 0:
        import time; time.sleep(300)
    os._exit(0)
"""


@pytest.mark.parametrize("ending", ["while True:\n    pass", "import os\nos._exit(3)"], ids=["timeout", "death"])
def test_no_process_survives_a_timed_out_or_dead_step(sb, ending):
    assert sb.run(ESCAPES).error is None
    time.sleep(0.3)
    zygote = sb._container.zygote_pid
    escaped = set(uid_pids(sb.uid)) - {zygote}
    assert len(escaped) >= 3  # worker, sleep, daemon
    r = sb.run(ending)
    assert r.worker_died
    assert not escaped & set(uid_pids(sb.uid))  # the step is over only when all of them are dead
    # the zygote forks a short-lived child to empty the discarded workdir (its own, not model
    # code's): on a loaded machine it may outlive a few seconds, so wait for it longer
    assert _container_pids(sb, wait=15.0) == [zygote]  # nothing but the zygote is left
    assert_recovers(sb)


def test_a_fork_bomb_of_sleepers_makes_fork_fail_cleanly_then_recovers():
    limits = SandboxLimits(step_timeout=3.0, cpu_seconds=5, max_processes=24)
    with Sandbox(limits=limits) as box:
        bomb = box.run("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                       "            os.setsid(); time.sleep(300); os._exit(0)\n        n += 1\n"
                       "except OSError:\n    print('bombed', n)")  # fmt: skip
        assert bomb.stdout.startswith("bombed")
        with pytest.raises(SandboxError, match="fork"):
            box.fork()
        assert box.run("import os\nos._exit(1)").worker_died  # its sleepers go with it
        assert _container_pids(box, wait=15.0) == [box._container.zygote_pid]  # (and its workdir cleaner)
        children = [box.fork() for _ in range(4)]  # the budget is back
        assert [c.run("print(1)").stdout for c in children] == ["1\n"] * 4
        for child in children:
            child.close()


def test_sag_drops_a_candidate_whose_fork_fails():
    from symkd.pipelines.agents.loop import choose_by_consistency

    limits = SandboxLimits(step_timeout=3.0, cpu_seconds=5, max_processes=24)
    bomb = ("```python\nimport os, time\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(300); os._exit(0)\nexcept OSError:\n    final_answer(1)\n```")  # fmt: skip
    with Sandbox(limits=limits) as box:
        _, _, result, child, vote = choose_by_consistency([bomb, "```python\nfinal_answer(2)\n```"], box)
        assert vote["parsed"] == 2 and vote.get("fork_failed") == 1 and result.final_answer == "1"
        child.close()
        assert box.run("print('episode goes on')").stdout == "episode goes on\n"


# ---------------------------------------------------------------- hostile text

TEXTS = {
    "lone surrogate": "final_answer(chr(0xd800) + 'x' + chr(0xdfff))",
    "NUL and escapes": "print('a\\x00b\\x1b[31mred\\x1b]52;c;aGk=\\x07\\x9b\\r')\nfinal_answer('\\x1b]0;title\\x07')",
    "invalid UTF-8": "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\xed\\xa0\\x80ok\\n')\nsys.stderr.buffer.write(b'\\xc3')",
    "megabytes": "print('y' * 3_000_000)\nfinal_answer('z' * 5_000_000)",
    "error text": "raise ValueError(chr(0xd800) * 3 + '\\x1b[2J' + 'e' * 2_000_000)",
    "tool call": "print(echo(chr(0xdc80) + '\\x00'))\nfinal_answer({'k' + chr(0xd800): [chr(0xdbff)]})",
}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("code", list(TEXTS.values()), ids=list(TEXTS))
def test_any_string_comes_back_safe(sb, code):
    r = sb.run(code)
    assert not r.worker_died, r.error
    produced = list(_strings(r.to_dict()))
    assert produced, r
    for text in produced:
        text.encode("utf-8")  # no lone surrogate
        assert not _UNSAFE.search(text), repr(text[:80])
        assert len(text) <= FAST.output_bytes + 100
    if "'z' * 5_000_000" in code:
        assert "truncated" in r.final_answer and "truncated" in r.stdout
    assert sb.run("print('ok')").stdout == "ok\n"
