"""Packaging: data folders ship in the wheel; README and CI run the same test command."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "symkd commonsense distill --teacher smollm2" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("symkd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "symkd/_data/prompts/quickstart/explain.yaml" in names
    assert "symkd/_data/critics/README.md" in names
    assert "symkd/cli/__init__.py" in names and "symkd/teachers/openai_api.py" in names
    assert not any(n.startswith("tests/") for n in names)


def test_lazy_top_level_api_matches_symkd_api():
    import symkd
    import symkd.api

    assert set(symkd.__all__) - {"__version__"} == set(symkd.api.__all__)
    assert all(callable(getattr(symkd, name)) for name in symkd.api.__all__)
