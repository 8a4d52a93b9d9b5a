"""Containment: each test tries an escape from the bwrap sandbox and fails if it works.

Host-side targets are world-readable/writable on purpose, so only the sandbox (not file
permissions) stands between model code and them. Every test leaves the host unchanged.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from symkd.sandbox import Sandbox, SandboxLimits
from symkd.sandbox.launch import find_bwrap

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or find_bwrap() is None, reason="needs Linux and bubblewrap (apt-get install bubblewrap)"
)

FAST = SandboxLimits(step_timeout=3.0, cpu_seconds=5)


@pytest.fixture
def host_dir():
    """A world-writable dir outside /tmp (so a leaky /tmp would not hide it) with a secret."""
    path = Path(tempfile.mkdtemp(prefix="symkd-host-", dir="/var/tmp"))
    path.chmod(0o777)
    (path / "secret.txt").write_text("TOP-SECRET-42")
    (path / "secret.txt").chmod(0o666)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sb():
    with Sandbox(limits=FAST) as box:
        yield box


def uid_pids(uid: int, pgid: int | None = None) -> list[int]:
    """Live processes of ``uid`` (a sandbox's own), optionally in one process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            owner = (entry / "status").read_text().split("Uid:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if owner == str(uid) and stat[0] not in "ZX" and (pgid is None or int(stat[2]) == pgid):
            found.append(int(entry.name))
    return found


def test_files_outside_the_workdir_are_invisible_and_unwritable(sb, host_dir):
    code = f"""
import os
for path in [{str(host_dir / 'secret.txt')!r}, '/etc/shadow', '/root/.bashrc']:
    try:
        print('READ', path, open(path).read()[:20])
    except OSError as exc:
        print('noread', type(exc).__name__)
for path in [{str(host_dir / 'pwned.txt')!r}, '/etc/pwned', '/usr/pwned', '/pwned']:
    try:
        open(path, 'w').write('x'); print('WROTE', path)
    except OSError as exc:
        print('nowrite', type(exc).__name__)
open('inside.txt', 'w').write('ok')
print(open('inside.txt').read())
"""
    r = sb.run(code)
    assert r.error is None, r.error
    assert "READ" not in r.stdout and "WROTE" not in r.stdout and "TOP-SECRET" not in r.stdout
    assert r.stdout.count("nowrite") == 4 and r.stdout.strip().endswith("ok")
    assert sorted(p.name for p in host_dir.iterdir()) == ["secret.txt"]
    assert not Path("/etc/pwned").exists() and not Path("/pwned").exists()
    assert (sb.workdir / "inside.txt").read_text() == "ok"


def test_tmp_is_private(sb, tmp_path):
    marker = Path(tempfile.gettempdir()) / f"symkd-host-marker-{os.getpid()}"
    marker.write_text("host")
    try:
        r = sb.run(f"import os\nprint(os.path.exists({str(marker)!r}), os.listdir('/tmp'))\nopen('/tmp/in', 'w').write('1')")
        assert r.error is None and r.stdout.strip() == "False []"
        assert not Path("/tmp/in").exists()
    finally:
        marker.unlink()


def test_environment_secrets_do_not_reach_model_code(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-abc123")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_abc123")
    with Sandbox(limits=FAST) as box:
        r = box.run("import os, subprocess\nprint(dict(os.environ))\n"
                    "print(subprocess.run(['cat', '/proc/self/environ'], capture_output=True, text=True).stdout)\n"
                    "print(subprocess.run(['env'], capture_output=True, text=True).stdout)")
    assert r.error is None, r.error
    assert "PATH" in r.stdout
    assert "secret" not in r.stdout and "OPENAI" not in r.stdout and "HF_TOKEN" not in r.stdout


def test_no_network_even_to_host_loopback(sb):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    seen = []

    def accept() -> None:
        stop = time.monotonic() + 3
        while time.monotonic() < stop:
            try:
                seen.append(server.accept())
            except (socket.timeout, OSError):
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    r = sb.run(f"""
import socket
try:
    s = socket.create_connection(('127.0.0.1', {port}), timeout=1); print('CONNECTED')
except OSError as exc:
    print('blocked', type(exc).__name__)
print([name for _, name in socket.if_nameindex()])
""")
    thread.join()
    server.close()
    assert "CONNECTED" not in r.stdout and "blocked" in r.stdout
    assert "['lo']" in r.stdout  # only the sandbox's own loopback
    assert seen == []


def test_subprocess_and_os_system_run_contained_as_the_sandboxs_own_uid(sb, host_dir):
    target = host_dir / "from-subprocess"
    r = sb.run(f"""
import os, subprocess
print('uid', os.getuid(), os.geteuid())
os.system('id -u; touch {target} 2>/dev/null || echo touch-failed')
p = subprocess.run(['sh', '-c', 'echo sub > {target}'], capture_output=True, text=True)
print('rc', p.returncode)
""")
    assert r.error is None, r.error
    if os.geteuid() == 0:
        assert sb.uid >= 1 << 30  # never root, and not nobody: a uid of its own
    assert f"uid {sb.uid} {sb.uid}" in r.stdout and str(sb.uid) in r.stdout.splitlines()
    assert "touch-failed" in r.stdout and "rc 0" not in r.stdout
    assert not target.exists()


def test_ctypes_libc_system_is_contained(sb, host_dir):
    target = host_dir / "from-ctypes"
    r = sb.run(f"import ctypes\nlibc = ctypes.CDLL(None)\nprint('rc', libc.system(b'id -u; echo x > {target}'))\n"
               "print('setuid0', libc.setuid(0))")
    assert r.error is None, r.error
    assert str(sb.uid) in r.stdout and "rc 0" not in r.stdout and "setuid0 -1" in r.stdout
    assert not target.exists()


def test_fork_bomb_is_stopped_and_cleaned_up():
    limits = SandboxLimits(step_timeout=2.0, cpu_seconds=5, max_processes=32)
    with Sandbox(limits=limits) as box:
        uid = box.uid
        counted = box.run("import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                          "            import time; time.sleep(60); os._exit(0)\n        n += 1\n"
                          "except OSError as exc:\n    print(n, type(exc).__name__)")
        assert counted.error is None and counted.stdout.endswith("BlockingIOError\n")
        assert int(counted.stdout.split()[0]) < 32
        pgid = box.pid
        began = time.monotonic()
        bomb = box.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
        assert bomb.timed_out and time.monotonic() - began < 6
        settle = time.monotonic() + 3  # SIGKILLed processes leave /proc asynchronously (reaped inside the namespace)
        while uid_pids(uid, pgid) and time.monotonic() < settle:
            time.sleep(0.05)
        assert uid_pids(uid, pgid) == []
        assert box.run("print('alive')").stdout == "alive\n"
    deadline = time.monotonic() + 3
    while uid_pids(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uid_pids(uid) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="own uids per sandbox need root (as in CI)")
def test_each_sandbox_has_its_own_process_budget():
    """RLIMIT_NPROC counts per uid machine-wide: sandboxes sharing one uid would share one budget
    (each holds a zygote and a worker, so with a limit of 4 a third could not even start)."""
    limits = SandboxLimits(step_timeout=5.0, cpu_seconds=5, max_processes=4)
    boxes = []
    try:
        for _ in range(6):
            boxes.append(Sandbox(limits=limits))
        assert len({b.uid for b in boxes}) == 6
        results = [b.run("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\nprint('forked')")
                   for b in boxes]  # fmt: skip
        assert [r.stdout for r in results] == ["forked\n"] * 6, [r.error for r in results]
    finally:
        for b in boxes:
            b.close()


def test_memory_bomb_fails_inside_and_parent_is_fine(sb):
    r = sb.run("x = []\nwhile True:\n    x.append(bytearray(50 * 1024 * 1024))")
    assert "MemoryError" in (r.error or "") or r.worker_died
    assert not r.timed_out
    assert sb.run("print(sum(range(10)))").stdout == "45\n"


def test_infinite_loop_is_killed_with_its_process_group(sb):
    r0 = sb.run("import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint(child.pid)")
    pgid = sb.pid
    assert len(uid_pids(sb.uid, pgid)) == 2  # worker + sleep
    began = time.monotonic()
    r = sb.run("while True:\n    pass")
    assert r.timed_out and r.worker_died and r.exit_code == -9
    assert 2.5 < time.monotonic() - began < 6
    assert "TimeoutError" in r.error and r0.error is None
    assert uid_pids(sb.uid, pgid) == []
    after = sb.run("print('fresh', 'child' in globals())")
    assert after.restarted and after.stdout == "fresh False\n"


def test_huge_output_is_capped(sb):
    r = sb.run("import sys\nprint('a' * 5_000_000)\nsys.stderr.write('b' * 300_000)\nprint('tail')")
    assert r.error is None
    assert len(r.stdout) < 65536 + 100 and r.stdout.startswith("aaaa") and "[... truncated" in r.stdout
    assert len(r.stderr) < 65536 + 100 and "[... truncated 234464 bytes]" in r.stderr
    assert sb.run("print('next')").stdout == "next\n"


def test_cpu_limit_is_enforced_by_the_kernel():
    with Sandbox(limits=SandboxLimits(cpu_seconds=1, step_timeout=20)) as box:
        began = time.monotonic()
        r = box.run("while True:\n    pass")
        assert r.worker_died and not r.timed_out and r.exit_code == -24  # SIGXCPU
        assert time.monotonic() - began < 15
