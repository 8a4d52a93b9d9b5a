"""Reading JSONL with line-numbered errors and writing output files without clobbering.

Every file symkd writes goes through :func:`atomic_write`: a temporary file beside the target,
renamed over it only when complete, so a failed or interrupted command leaves an existing file
byte-identical. A target that exists and is not a regular file (a device such as
``/dev/full``, a symbolic link, a FIFO, a folder) is refused with one line, never replaced;
``-`` and ``/dev/stdout`` are written through to standard output on purpose.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from symkd.errors import UserError

#: names that mean "standard output": written through, never renamed over
STDOUT_NAMES = ("-", "/dev/stdout")
#: errors writing a file that say something about the disk or the target, not about symkd
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))  # fmt: skip


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; one clear error for a bad one."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a JSONL file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj


def is_stdout(path: str | Path | None) -> bool:
    """Whether ``path`` names standard output (``-`` or ``/dev/stdout``)."""
    return path is not None and str(path) in STDOUT_NAMES


def _existing(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # (the folder is a file: said next)
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def _refuse_special(path: Path, st: os.stat_result | None) -> None:
    if st is None or stat.S_ISREG(st.st_mode):
        return
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    if kind == "a folder":
        raise UserError(f"{path}: is a folder; give a file path")
    raise UserError(f"{path}: exists and is {kind}; refusing to replace it (remove it or choose another path)")


def check_writable(path: str | Path) -> None:
    """Fail with one line, before any work, when ``path`` cannot be written as a new file.

    Refused: an existing target that is not a regular file (device, symbolic link, FIFO,
    folder), a missing folder, a folder symkd cannot create files in (tried, not guessed:
    root, read-only mounts). Standard output (``-``, ``/dev/stdout``) always passes.
    """
    if is_stdout(path):
        return
    path = Path(path)
    _refuse_special(path, _existing(path))
    parent = path.parent
    if not parent.is_dir():
        raise UserError(f"{path}: folder {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{path}: cannot write in {parent} ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _stdout(mode: str) -> Iterator[Any]:
    stream = sys.stdout.buffer if "b" in mode else sys.stdout
    try:
        yield stream
        stream.flush()
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and exc.errno not in _WRITE_ERRNOS:
            raise
        _drop_stdout()  # else Python reports the same failure again when it flushes at exit
        if not isinstance(exc, BrokenPipeError):  # `| head` leaving early is no error
            raise UserError(f"standard output: not written ({exc.strerror or exc})") from None


def _drop_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it over ``path`` on success.

    Anything that goes wrong (an exception in the caller's block, a full disk) removes the
    temporary file and leaves ``path`` as it was; disk errors become one-line UserErrors.
    ``-`` / ``/dev/stdout`` write straight to standard output.
    """
    if is_stdout(path):
        with _stdout(mode) as fh:
            yield fh
        return
    path = Path(path)
    before = _existing(path)
    _refuse_special(path, before)
    if not path.parent.is_dir():
        raise UserError(f"{path}: folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"{path}: cannot write in {path.parent} ({exc.strerror or exc})") from None
    try:
        os.chmod(tmp, stat.S_IMODE(before.st_mode) if before else 0o666 & ~_umask())  # mkstemp makes 0600 files
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _refuse_special(path, _existing(path))  # something else appeared there meanwhile
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(f"{path}: not written ({exc.strerror or exc})") from None
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            raise UserError(f"{path}: not written ({exc.strerror or exc})") from None
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_jsonl(path: str | Path, rows: Any) -> int:
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
            n += 1
    return n


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with readable non-ASCII text but nothing a terminal or a UTF-8 file chokes on.

    C1 controls, DEL, U+2028/U+2029 and lone surrogates (which no UTF-8 file can hold) are
    written as ``\\uXXXX`` escapes; the result is valid JSON that reads back to the same value.
    """
    from symkd.safetext import json_escape_unsafe

    return json_escape_unsafe(json.dumps(obj, ensure_ascii=False, **kwargs))
