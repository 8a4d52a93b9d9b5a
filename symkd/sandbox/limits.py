"""Value types of the sandbox: the limits a caller sets and the result of one step."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class SandboxError(RuntimeError):
    """The sandbox itself failed (the container would not start, a fork was refused)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Kernel-enforced limits (setrlimit in the sandbox) plus the parent's wall clock.

    ``cpu_seconds`` is CPU per step: before each step the worker raises its soft RLIMIT_CPU to
    (CPU used so far + cpu_seconds); going over it delivers SIGXCPU. ``episode_cpu_seconds`` is
    the hard RLIMIT_CPU, a worker's lifetime cap that model code cannot raise.
    ``max_processes`` is RLIMIT_NPROC, which the kernel counts per uid (each container has its
    own when symkd runs as root), threads included: it covers the zygote, the episode's worker
    and its forks and every process model code starts, so 64 allows ~16 forks with room to spare while a fork bomb stops at 64.
    ``step_timeout`` is wall seconds per step (time spent inside host tools is not counted).
    ``output_bytes`` caps stdout and stderr each per step (and the final answer, the error text
    and each string of a tool call, in characters). ``tmp_mb`` sizes the private /tmp and
    ``work_mb`` the episode's working directory, shared by its forks: both are tmpfs (RAM, which
    RLIMIT_AS does not cover, bounded by these sizes; nothing on the host disk). Writing past
    them fails with ENOSPC. "rlimit" mode has neither: its workdir is a host folder, uncapped.
    """

    cpu_seconds: int = 10
    memory_mb: int = 512
    max_processes: int = 64
    file_size_mb: int = 16
    open_files: int = 64
    step_timeout: float = 10.0
    output_bytes: int = 65536
    episode_cpu_seconds: int = 600
    tmp_mb: int = 64
    work_mb: int = 256

    def for_worker(self) -> dict:
        return asdict(self)


@dataclass
class StepResult:
    """What one ``Sandbox.run`` produced. ``error`` is model-facing text (traceback tail).

    ``exit_code`` is the code of ``sys.exit()`` called by the step, or the worker's exit status
    (negative signal number, e.g. -9 after a timeout) when the worker died; None otherwise.
    ``restarted`` says this step ran in a fresh worker because the previous one had died.
    """

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    exit_code: int | None = None
    final_answer: str | None = None
    is_final: bool = False
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    worker_died: bool = False
    restarted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
