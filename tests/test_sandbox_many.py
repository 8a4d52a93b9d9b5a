"""Sandboxes keep working at scale: host fds past 1023, a root forked thousands of times.

Found on a 16-core machine running 512 episodes at once: each sandbox holds a few descriptors in
the host, and past ~200 sandboxes the numbers handed to a new container passed 1023, where
``select()`` fails ("filedescriptor out of range"): the container died before its first step.
"""

from __future__ import annotations

import os
import resource

import pytest

from symkd.sandbox import Sandbox, SandboxLimits


@pytest.fixture
def high_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400 if hard == resource.RLIM_INFINITY else min(hard, 1400)
    if want < 1200:
        pytest.skip(f"the hard limit on open files ({hard}) is too low to reach fd 1100")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    held = []
    while not held or held[-1] < 1100:
        held.append(os.open(os.devnull, os.O_RDONLY))
    yield
    for fd in held:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("mode", ["bwrap", "rlimit"])
def test_a_sandbox_starts_and_runs_when_host_fds_pass_1023(high_fds, mode):
    with pytest.warns(RuntimeWarning) if mode == "rlimit" else _nothing():
        box = Sandbox(limits=SandboxLimits(step_timeout=10), mode=mode)
    try:
        assert box.run("print(6 * 7)").stdout.strip() == "42"
        child = box.fork()
        try:
            assert child.run("print(7 * 7)").stdout.strip() == "49"
        finally:
            child.close()
    finally:
        box.close()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_root_forked_once_per_task_outlives_its_step_cpu_budget():
    """Found converting all 7,473 GSM8K rationales (one fork of one root per task): each fork's
    page-table copy is CPU time of the root, and the root died of SIGXCPU at task 6,902 on a
    slower machine. A 300 MB heap makes each fork cost ~10 ms of the root's CPU, so 300 forks
    spend ~3 s of a root whose step budget is 1 s."""
    with Sandbox(limits=SandboxLimits(cpu_seconds=1, memory_mb=1024, step_timeout=10)) as root:
        big = root.run("heap = bytearray(300 * 2**20)\nfor i in range(0, len(heap), 4096): heap[i] = 1")
        assert big.error is None
        for _ in range(300):
            root.fork().close()
        child = root.fork()
        assert child.run("print(len(heap) // 2**20)").stdout.strip() == "300"
        child.close()
