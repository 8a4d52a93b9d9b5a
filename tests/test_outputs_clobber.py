"""Every ``--out`` of every command: what exists there is never clobbered.

An existing target that is not a regular file (a character device, a FIFO, a symbolic link,
a folder) is refused with one line and exit 2, and stays what it was; ``-`` and
``/dev/stdout`` are written through on purpose; a command that fails leaves an existing file
byte-identical; a folder symkd cannot write in is one line, not a traceback. All through the
real ``symkd`` command in subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from symkd.graphs import triples as knowledge
from symkd.pipelines.strategies.library import Strategy, insert, open_library
from symkd.store.db import Store
from tests.procs import ENV, one_error_line, run, write_prompts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dbs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dbs")
    kg = folder / "kg.db"
    with Store(kg) as store:
        knowledge.add_triples(store, [{"head": "PersonX eats", "relation": "xWant", "tail": "to sleep"},
                                      {"head": "PersonX runs", "relation": "xReact", "tail": "tired"}])  # fmt: skip
    lib = folder / "lib.db"
    store = open_library(lib, create=True)
    insert(store, Strategy("s1", "When in doubt, add the parts."), None, editor="test")
    store.close()
    return {"kg": kg, "lib": lib}


def commands(dbs: dict[str, Path], out: Path, fake_url: str, prompts: Path, tmp: Path) -> dict[str, list[str]]:
    kg, lib = str(dbs["kg"]), str(dbs["lib"])
    export = ["export", "--db", kg, "-q", "--out", str(out), "--format"]
    return {
        "export-json": [*export, "json"],
        "export-graphml": [*export, "graphml"],
        "export-tsv": [*export, "tsv"],
        "export-parquet": [*export, "parquet"],
        "export-chat-jsonl": [*export, "chat-jsonl"],
        "strategies-md": ["strategies", "export", "--db", lib, "--out", str(out)],
        "strategies-parquet": ["strategies", "export", "--db", lib, "--format", "parquet", "--out", str(out)],
        "agent-export": ["agent", "export", "--db", kg, "--out", str(out)],
        "generate": ["generate", "-t", "openai:fake", "--base-url", fake_url, "-p", str(prompts), "--db", str(tmp / "g.db"),
                     "-q", "--out", str(out)],  # fmt: skip
    }


COMMANDS = ["export-json", "export-graphml", "export-tsv", "export-parquet", "export-chat-jsonl", "strategies-md",
            "strategies-parquet", "agent-export", "generate"]  # fmt: skip


def _refused(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert expected in one_error_line(proc)


def _special(kind: str, path: Path) -> str:
    """Make ``path`` a FIFO, a character device (like /dev/full) or a symbolic link to a file."""
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO"
    if kind == "device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # /dev/full's numbers, in our own folder
        except (PermissionError, OSError):
            pytest.skip("cannot create a device node here (needs root and CAP_MKNOD)")
        return "a character device"
    (path.parent / "real.txt").write_text("the user's file\n")
    path.symlink_to(path.parent / "real.txt")
    return "a symbolic link"


@pytest.mark.parametrize("kind", ["device", "fifo", "symlink"])
@pytest.mark.parametrize("name", COMMANDS)
def test_a_special_target_is_refused_and_left_as_it_was(dbs, tmp_path, fake_openai, kind, name):
    out = tmp_path / "target"
    what = _special(kind, out)
    before = os.lstat(out)
    cmd = commands(dbs, out, fake_openai.base_url, write_prompts(tmp_path / "p.jsonl", 2), tmp_path)[name]
    _refused(run(*cmd), f"exists and is {what}; refusing to replace it")
    after = os.lstat(out)
    assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino)
    if kind == "symlink":
        assert (tmp_path / "real.txt").read_text() == "the user's file\n"
    assert fake_openai.stats()["total"] == 0, "refused before any request"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".target.")], "no temporary file left"


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_standard_output_is_written_through(dbs, target):
    proc = run("export", "--db", str(dbs["kg"]), "--format", "chat-jsonl", "--out", target, "-q")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 2 and proc.stderr.startswith("chat-jsonl: 2 lines -> ")


def test_a_device_written_through_on_purpose_reports_a_full_disk(dbs, tmp_path):
    proc = subprocess.run(f"{' '.join(_symkd())} export --db {dbs['kg']} --format json --out - -q > /dev/full", shell=True,
                          capture_output=True, text=True, env=ENV)  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def _symkd() -> list[str]:
    import sys

    return [sys.executable, "-m", "symkd.cli"]


def test_a_failed_chat_jsonl_export_leaves_the_existing_file_byte_identical(dbs, tmp_path):
    out = tmp_path / "train.jsonl"
    out.write_bytes(b"the user's training data\n\x00\xff")
    proc = run("export", "--db", str(dbs["kg"]), "--format", "chat-jsonl", "--out", str(out), "--relations", "xNeed")
    _refused(proc, "no triples match")
    assert out.read_bytes() == b"the user's training data\n\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


@contextlib.contextmanager
def read_only_folder(path: Path):
    """A folder nobody can create files in (root included: chattr +i where the mode is not enough)."""
    path.mkdir()
    path.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    try:
        try:
            (path / ".probe").touch()
        except OSError:
            yield path
        else:
            pytest.skip("cannot make a read-only folder here")
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        path.chmod(0o755)


@pytest.mark.parametrize("where", ["read-only folder", "existing folder"])
@pytest.mark.parametrize("name", COMMANDS)
def test_an_unwritable_out_is_one_line(dbs, tmp_path, fake_openai, where, name):
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    with contextlib.ExitStack() as stack:
        if where == "existing folder":
            out, expected = tmp_path / "a-folder", "is a folder"
            out.mkdir()
        else:
            out, expected = stack.enter_context(read_only_folder(tmp_path / "ro")) / "o.out", "cannot write in"
        _refused(run(*commands(dbs, out, fake_openai.base_url, prompts, tmp_path)[name]), expected)
        assert list(out.parent.iterdir()) == [] if where != "existing folder" else list(out.iterdir()) == []
    assert fake_openai.stats()["total"] == 0
