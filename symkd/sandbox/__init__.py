"""OS-level sandbox for untrusted, model-written Python code.

AST interpreters are not a security boundary, so model code runs in a separate process, one
per episode, isolated by the kernel::

    from symkd.sandbox import Sandbox, SandboxLimits, StepResult, check_available
    limits = SandboxLimits(cpu_seconds=10, memory_mb=512, max_processes=64, file_size_mb=16,
                           open_files=64, step_timeout=10.0, output_bytes=65536)
    with Sandbox(limits=limits, tools={"search": my_search}, mode="bwrap") as sb:
        r = sb.run("x = 2\\nprint(x*21)")     # r.stdout == '42\\n'; globals persist
        r = sb.run("final_answer(x*21)")      # r.is_final, r.final_answer == '42'
        child = sb.fork()                     # os.fork() of the worker: a copy of the globals
        child.run("x = 5"); child.close()     # sb still has x == 2

- ``mode="bwrap"`` (default): bubblewrap with new network (no network at all), PID, IPC and UTS
  namespaces, a read-only /usr and /etc, no /home or /root, /tmp and the episode's work
  directory as sized tmpfs (``tmp_mb``, ``work_mb``; nothing on the host disk),
  ``--die-with-parent``, and an environment of PATH, LANG, LC_ALL, PYTHONHASHSEED,
  PYTHONDONTWRITEBYTECODE, HOME (the workdir), TMPDIR. The interpreter prefix is bound read-only
  at /opt/symkd-py. No bwrap: ``check_available`` / ``Sandbox`` raise UserError
  (``apt-get install bubblewrap``). ``$SYMKD_BWRAP`` or ``bwrap=`` pick the binary.
- ``mode="rlimit"``: the same limits, uid drop, seccomp filter and protocol checks, no
  namespaces (host files and network are reachable, the workdir is an uncapped host folder).
  Weaker; a RuntimeWarning says so each time one starts.
- When symkd runs as root, the sandbox setgroups/setgid/setuid's to a uid of its own (one per
  container, from 2**30 up; ``Sandbox.uid``) before any model code runs: the kernel ignores
  RLIMIT_NPROC for root and counts it per uid machine-wide. Limits are setrlimit: CPU seconds
  (per step), address space, processes (per uid), file size, open files; a seccomp filter
  (seccomp.py) denies namespaces, mounts and ptrace; the parent enforces a wall-clock timeout
  per step; stdout/stderr are capped.
- Tools run in the parent: ``search("q")`` in model code sends a request over the worker's
  socket; the parent calls ``tools["search"]``, returns ``str(result)``; a tool's exception comes
  back as ``ToolError("ExcType: message")``. ``final_answer(x)`` ends the step.
- Everything read from the sandbox is hostile (protocol.py): a frame that breaks the protocol,
  like a timeout or a dead worker, ends the step with ``error`` set and ``worker_died``; the
  next ``run`` starts a fresh worker with empty state (``restarted``). ``run`` never raises but
  on a closed sandbox; ``fork`` raises SandboxError when no copy can be made. After a worker is
  discarded, every process it left (setsid children too) is killed (procs.py). Every string of a
  StepResult is clean text (text.py).
"""

from symkd.sandbox.core import Sandbox
from symkd.sandbox.launch import check_available
from symkd.sandbox.limits import SandboxError, SandboxLimits, StepResult

__all__ = ["Sandbox", "SandboxError", "SandboxLimits", "StepResult", "check_available"]
