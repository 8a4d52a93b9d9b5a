"""Start the sandbox container (bwrap, or plain rlimits) and its zygote; spawn workers in it.

One container per episode: a bwrap process tree (new network, PID and IPC namespaces, read-only
system, private /tmp, only the episode's box writable) whose first process is the zygote from
``_worker.py``. Workers (the root ``Sandbox`` and its forks) all live in it; it is killed when
the last of them closes. In "rlimit" mode the zygote is a plain child process with the same
limits and uid drop, but it sees the host's filesystem and network.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from symkd.errors import UserError
from symkd.sandbox import _worker
from symkd.sandbox.types import SandboxError, SandboxLimits

MODES = ("bwrap", "rlimit")
PY_MOUNT, VENV_MOUNT, WORKER_MOUNT, BOX_MOUNT = "/opt/symkd-py", "/opt/symkd-venv", "/opt/symkd-worker.py", "/sandbox"
START_TIMEOUT = 30.0
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


def _clean_env(home: str, tmp: str, extra: dict[str, str]) -> dict[str, str]:
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


def bwrap_command(bwrap: str, box: str, tmp_mb: int = 64) -> tuple[list[str], str, dict[str, str]]:
    """(argv prefix up to the interpreter, box path seen inside, env)."""
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
    args += py_args + ["--ro-bind", _worker.__file__, WORKER_MOUNT, "--bind", box, BOX_MOUNT,
                       "--chdir", BOX_MOUNT, "--clearenv"]
    if os.geteuid() == 0:  # needed only for the zygote's own setuid to the container's uid
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    env = _clean_env(BOX_MOUNT, "/tmp", py_env)
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


@dataclass
class Channel:
    """A worker as the host sees it: control socket, output pipes, pids (host and in-sandbox)."""

    sock: socket.socket
    out_fd: int
    err_fd: int
    pid: int
    ns_pid: int
    workdir: Path

    def close(self) -> None:
        self.sock.close()
        for fd in (self.out_fd, self.err_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class Container:
    """One sandbox tree: a bwrap (or plain) process running the zygote, shared by forks."""

    def __init__(self, mode: str, limits: SandboxLimits, tools: list[str], bwrap: str | None = None):
        bwrap_path = check_available(mode, bwrap)
        if mode == "rlimit":
            warnings.warn(RLIMIT_WARNING, RuntimeWarning, stacklevel=4)
        self.mode, self.limits, self.users, self.exits = mode, limits, 0, {}
        self.host_dir = Path(tempfile.mkdtemp(prefix="symkd-sandbox-"))
        self.box = self.host_dir / "box"
        self.box.mkdir()
        (self.box / ".tmp").mkdir()
        self.uid = container_uid() if os.geteuid() == 0 else os.getuid()
        if os.geteuid() == 0:  # the container's uid may pass through (not list) the host dir to its box
            os.chmod(self.host_dir, 0o711)
            for path in (self.box, self.box / ".tmp"):
                os.chown(path, self.uid, self.uid)
        self._next = 0
        self._start(bwrap_path, tools)

    def _start(self, bwrap_path: str | None, tools: list[str]) -> None:
        host, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cfg = {"fd": peer.fileno(), "limits": self.limits.for_worker(), "tools": tools, "uid": self.uid}
        if bwrap_path:
            argv, self.box_inside, env = bwrap_command(bwrap_path, str(self.box), self.limits.tmp_mb)
        else:
            # run a copy from a folder of its own: started in place, the script's folder
            # (symkd/sandbox, with its types.py) would come first on sys.path and shadow the stdlib
            worker = self.host_dir / "symkd-worker.py"
            shutil.copyfile(_worker.__file__, worker)
            argv = [sys.executable, "-s", "-B", str(worker)]
            self.box_inside = str(self.box)
            env = _clean_env(str(self.box), str(self.box / ".tmp"), {})
        self.log = open(self.host_dir / "container.log", "w+b")
        self.proc = subprocess.Popen(
            argv + [json.dumps(cfg)], pass_fds=(peer.fileno(),), env=env, cwd=str(self.box),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True,
        )
        peer.close()
        self.zygote = host
        msg = self._await(host, "ready")
        if msg is None:
            why = self.log_tail()  # before kill() closes the log
            self.kill()
            raise SandboxError(f"sandbox did not start: {why}")
        if msg.get("uid") != self.uid:
            self.kill()
            raise SandboxError(f"sandbox runs as uid {msg.get('uid')}, not its own uid {self.uid}")

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    def _read_one(self, sock: socket.socket, timeout: float) -> dict | None:
        """One message (None on EOF/timeout/garbage); zygote exit reports are recorded."""
        sock.settimeout(max(0.001, timeout))
        try:
            msg, fds, pid = _worker.recv_msg(sock)
        except (OSError, EOFError, ValueError):
            return None
        finally:
            sock.settimeout(None)
        for fd in fds:
            os.close(fd)
        if msg.get("op") == "exits":
            self._record_exits(msg)
        msg["_pid"] = pid
        return msg

    def _await(self, sock: socket.socket, op: str, timeout: float = START_TIMEOUT) -> dict | None:
        """The next message ``op`` (or ``*_failed``) on ``sock``."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read_one(sock, deadline - time.monotonic())
            if msg is None or msg.get("op") == op or str(msg.get("op", "")).endswith("_failed"):
                return msg

    def _record_exits(self, msg: dict) -> None:
        for item in msg.get("items", []):
            if isinstance(item, list) and len(item) == 2:
                self.exits[item[0]] = item[1]

    def pump(self) -> None:
        """Read pending zygote reports (worker exit statuses) without blocking."""
        while select.select([self.zygote], [], [], 0)[0]:
            if self._read_one(self.zygote, 1.0) is None:
                return

    def alive(self) -> bool:
        return self.proc.poll() is None

    def new_worker(self, via: socket.socket | None = None, copy: bool = False) -> Channel:
        """A fresh worker from the zygote, or (``via`` a worker's socket) a fork of that worker."""
        self._next += 1
        name = f"w{self._next}"
        host, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = {"op": "fork" if via else "spawn", "workdir": f"{self.box_inside}/{name}"}
        try:
            _worker.send_msg(via or self.zygote, request, [peer.fileno(), out_w, err_w])
        finally:
            for fd in (peer.fileno(), out_w, err_w):
                os.close(fd)
            peer.detach()
        hello = self._await_hello(host, via)
        if hello is None or hello.get("op") != "hello" or not hello.get("_pid"):
            host.close()
            os.close(out_r)
            os.close(err_r)
            raise SandboxError(f"could not start a sandbox worker: {self._why(hello)}")
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.exits.pop(hello.get("pid"), None)
        return Channel(host, out_r, err_r, hello["_pid"], hello.get("pid", 0), self.box / name)

    def _await_hello(self, host: socket.socket, via: socket.socket | None) -> dict | None:
        """A fork: the old worker's verdict first, then the copy's hello. A spawn: the hello,
        unless the zygote reports ``spawn_failed`` (e.g. RLIMIT_NPROC) first."""
        if via is not None:
            verdict = self._await(via, "forked")
            return verdict if verdict is None or verdict["op"] != "forked" else self._await(host, "hello")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready = select.select([host, self.zygote], [], [], deadline - time.monotonic())[0]
            if host in ready:
                return self._await(host, "hello")
            if self.zygote in ready:
                msg = self._read_one(self.zygote, 1.0)
                if msg is None or msg.get("op") == "spawn_failed":
                    return msg
        return None

    def _why(self, msg: dict | None) -> str:
        if msg and msg.get("error"):
            return str(msg["error"])
        return "the sandbox is gone" if not self.alive() else "no answer from the worker"

    def kill(self) -> None:
        """Kill the whole tree (bwrap: PID namespace dies with its init) and remove the box."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        self.zygote.close()
        self.log.close()
        shutil.rmtree(self.host_dir, ignore_errors=True)
