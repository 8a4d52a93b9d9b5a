"""How a sandbox container is started: the bwrap command line, its environment, its uid.

One container per episode: a bwrap process tree (new network, PID, IPC and UTS namespaces, a
read-only system, a sized tmpfs for /tmp and one for the episode's box, the only writable
places) whose first process is the zygote from :mod:`symkd.sandbox.inside` (see container.py). In "rlimit"
mode the zygote is a plain child process with the same limits, uid drop and seccomp filter, but
it sees the host's filesystem and network and its box is a host folder without a size cap.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
from pathlib import Path

from symkd.errors import UserError
from symkd.sandbox import inside

MODES = ("bwrap", "rlimit")
PY_MOUNT, VENV_MOUNT, WORKER_MOUNT, BOX_MOUNT = "/opt/symkd-py", "/opt/symkd-venv", "/opt/symkd-sandbox/inside", "/sandbox"
INSIDE = os.path.dirname(inside.__file__)  # the package run inside (stdlib only), mounted alone
RLIMIT_WARNING = (
    "symkd sandbox mode 'rlimit': resource limits only, no namespaces; model code can read the "
    "host filesystem and use the network. Use the default 'bwrap' mode for untrusted code."
)


def find_bwrap(bwrap: str | None = None) -> str | None:
    """The bwrap binary: the argument, else $SYMKD_BWRAP, else PATH."""
    path = bwrap or os.environ.get("SYMKD_BWRAP") or shutil.which("bwrap")
    return path if path and os.path.isfile(path) and os.access(path, os.X_OK) else None


def check_available(mode: str = "bwrap", bwrap: str | None = None) -> str | None:
    """Raise UserError unless ``mode`` can run here; return the bwrap path (None for rlimit)."""
    if mode not in MODES:
        raise UserError(f"unknown sandbox mode {mode!r}; choose one of {', '.join(MODES)}")
    if sys.platform != "linux":
        raise UserError(f"the symkd sandbox needs Linux (this is {sys.platform})")
    if mode == "rlimit":
        return None
    path = find_bwrap(bwrap)
    if path is None:
        where = bwrap or os.environ.get("SYMKD_BWRAP") or "PATH"
        raise UserError(
            f"bubblewrap (bwrap) not found ({where}); install it with `apt-get install bubblewrap`, "
            "or pass sandbox='rlimit' (limits only, no isolation; weaker)"
        )
    return path


def clean_env(home: str, tmp: str, extra: dict[str, str]) -> dict[str, str]:
    """Only these variables reach model code: no API keys, tokens or proxies."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "HOME": home, "TMPDIR": tmp}
    env.update(extra)
    return env


def _python_mounts() -> tuple[list[str], str, dict[str, str]]:
    """bwrap args binding the interpreter prefix (and a venv's) read-only at neutral paths."""
    base = os.path.realpath(sys.base_prefix)
    args = ["--ro-bind", base, PY_MOUNT]
    rel = os.path.relpath(os.path.realpath(sys.executable), os.path.realpath(sys.prefix))
    if rel.startswith(".."):
        rel = f"bin/python{sys.version_info.major}.{sys.version_info.minor}"
    env = {"LD_LIBRARY_PATH": f"{PY_MOUNT}/lib", "PATH": f"{PY_MOUNT}/bin:/usr/local/bin:/usr/bin:/bin"}
    if os.path.realpath(sys.prefix) != base:
        args += ["--ro-bind", os.path.realpath(sys.prefix), VENV_MOUNT]
        site = f"{VENV_MOUNT}/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
        env["PYTHONPATH"] = site
        rel = f"bin/python{sys.version_info.major}.{sys.version_info.minor}"
    return args, f"{PY_MOUNT}/{rel}", env


def bwrap_command(bwrap: str, tmp_mb: int = 64, work_mb: int = 256) -> tuple[list[str], str, dict[str, str]]:
    """(argv prefix up to the interpreter, box path seen inside, env). /tmp and the box are
    tmpfs of ``tmp_mb`` and ``work_mb`` MiB: RAM, not host disk, and gone with the container."""
    args = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        link = Path("/") / top
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), f"/{top}"]
        elif link.is_dir():
            args += ["--ro-bind", str(link), f"/{top}"]
    args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",  # in RAM: bounded
             "--perms", "0755", "--dir", "/opt"]
    py_args, python, py_env = _python_mounts()
    args += py_args + ["--ro-bind", INSIDE, WORKER_MOUNT,
                       "--perms", "1777", "--size", str(work_mb << 20), "--tmpfs", BOX_MOUNT,
                       "--chdir", BOX_MOUNT, "--clearenv"]  # fmt: skip
    if os.geteuid() == 0:  # needed only for the zygote's own setuid to the container's uid
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    env = clean_env(BOX_MOUNT, "/tmp", py_env)
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args + [python, "-s", "-B", WORKER_MOUNT], BOX_MOUNT, env


#: Model code runs as a uid of its own per container, never root and never shared: the kernel
#: counts RLIMIT_NPROC per uid across the whole machine, so containers sharing one uid (nobody)
#: would share one process budget (measured: with 64, the 33rd concurrent episode could not
#: start). A live process's pid and a per-process counter make the uid; no account is needed.
UID_BASE = 1 << 30
_uid_counter = itertools.count()


def container_uid() -> int:
    """A uid in [2**30, 2**31): this process's pid (folded to 20 bits) and a counter (10 bits),
    so containers of symkd processes running side by side do not share one."""
    return UID_BASE + (((os.getpid() & 0xFFFFF) << 10) | (next(_uid_counter) & 0x3FF))
