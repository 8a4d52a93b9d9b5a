"""The process that runs model code, inside the sandbox. Stdlib only: it runs from a neutral
interpreter path (/opt/symkd-py) where nothing of symkd is importable; this package is mounted
(or copied) alone, as ``inside``, and its modules import each other relatively.

wire.py: frames and the tool-call/answer encodings; zygote.py: start-up and ``spawn``;
worker.py: one episode's interpreter, its steps, forks and tool stubs.

Started as ``python -s -B FOLDER/inside CONFIG_JSON`` (see ``__main__.py``), it becomes the *zygote*: it drops root to
its container's own uid, sets no-new-privs, becomes the child subreaper and not dumpable, loads
the host-built seccomp filter (seccomp.py), applies the rlimits and serves ``spawn`` requests;
each forks a *worker* holding one episode's globals, and a worker double-forks itself for
``Sandbox.fork()``. Frames: a 4-byte big-endian length, then UTF-8 JSON; fds ride SCM_RIGHTS
from the host only. Model code shares its worker's process and socket, so the host (protocol.py)
checks every frame and believes nothing there but step data; exit statuses come from the
zygote, whose socket is closed in every worker.
"""
