"""CPU threads shared between symkd processes (symkd.threads), with real processes and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symkd import threads

REGISTER = "import time; from symkd.threads import register; register(); print('up', flush=True); time.sleep(120)"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cpu"
    monkeypatch.setenv("SYMKD_CPU_REGISTRY", str(folder))
    monkeypatch.delenv("SYMKD_THREADS", raising=False)
    yield folder
    threads.unregister()


def other_symkd_process(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "SYMKD_CPU_REGISTRY": str(folder)}
    proc = subprocess.Popen([sys.executable, "-c", REGISTER], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_the_cpus_are_shared_by_the_live_processes_only(registry: Path):
    cpus = threads.available_cpus()
    threads.register()
    assert threads.live_processes() == 1 and threads.thread_share() == cpus
    other = other_symkd_process(registry)
    try:
        assert threads.live_processes() == 2
        assert threads.thread_share() == max(1, cpus // 2)
    finally:
        other.send_signal(signal.SIGKILL)  # no chance to unregister
        other.wait()
    assert threads.live_processes() == 1 and threads.thread_share() == cpus
    assert not (registry / str(other.pid)).exists()  # the dead one's file is tidied away


def _wait_state(pid: int, stopped: bool) -> None:
    for _ in range(200):
        if (threads._stat(pid)[0] in threads.STOPPED) == stopped:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never {'stopped' if stopped else 'continued'}")


def test_a_stopped_process_gives_its_cpus_back_until_it_continues(registry: Path):
    """Found pausing an evaluation with SIGSTOP to time a training run beside it: the trainer
    took one thread of two for a process that ran nothing."""
    threads.register()
    other = other_symkd_process(registry)
    try:
        other.send_signal(signal.SIGSTOP)
        _wait_state(other.pid, stopped=True)
        assert threads.live_processes() == 1
        assert (registry / str(other.pid)).exists()  # still registered: it will run again
        other.send_signal(signal.SIGCONT)
        _wait_state(other.pid, stopped=False)
        assert threads.live_processes() == 2
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_a_reused_pid_does_not_count(registry: Path):
    registry.mkdir(parents=True)
    (registry / str(os.getpid())).write_text("1")  # this pid, but a start time that is not ours
    assert threads.live_processes() == 0


def test_an_explicit_count_wins(registry: Path, monkeypatch):
    other = other_symkd_process(registry)
    try:
        assert threads.thread_share(3) == 3
        monkeypatch.setenv("SYMKD_THREADS", "5")
        assert threads.thread_share() == 5
    finally:
        other.kill()
        other.wait()


def test_a_process_unregisters_when_it_exits(registry: Path):
    env = {**os.environ, "SYMKD_CPU_REGISTRY": str(registry)}
    subprocess.run([sys.executable, "-c", "from symkd.threads import register; register()"], env=env, check=True)
    deadline = time.monotonic() + 5
    while list(registry.glob("[0-9]*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(registry.glob("[0-9]*")) == []


def test_torch_threads_follow_the_share_below_the_callers_own_setting(registry: Path):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    threads._torch_ceiling.clear()
    try:
        torch.set_num_threads(1)
        assert threads.apply_torch_threads() == 1  # the caller chose one thread: kept
        threads._torch_ceiling[:] = [threads.available_cpus()]
        other = other_symkd_process(registry)
        try:
            assert threads.apply_torch_threads() == torch.get_num_threads() == max(1, threads.available_cpus() // 2)
        finally:
            other.kill()
            other.wait()
        assert threads.apply_torch_threads() == torch.get_num_threads() == threads.available_cpus()
    finally:
        threads._torch_ceiling.clear()
        torch.set_num_threads(before)
