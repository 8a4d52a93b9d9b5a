"""A user's package extends symkd through ``symkd.*`` entry points, read once per process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from symkd import plugins


def _fake_distribution(root):
    """An installed distribution (a dist-info folder on the path) declaring one critic."""
    info = root / "mycritics-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mycritics\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[symkd.critics]\nlength = mycritics_mod:LengthCritic\n")
    (root / "mycritics_mod.py").write_text("class LengthCritic:\n    name = 'length'\n")


def test_an_installed_packages_entry_point_is_found_and_loaded(tmp_path):
    _fake_distribution(tmp_path)
    code = textwrap.dedent("""
        from symkd.plugins import Registry, entry_point_names
        registry = Registry("symkd.critics", "critic")
        print(registry.load("length").name, "length" in entry_point_names(["symkd.critics"])["symkd.critics"])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["length", "True"]


def test_every_registry_shares_one_scan_of_the_installed_packages(monkeypatch):
    calls = []
    real = plugins.metadata.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(plugins.metadata, "entry_points", counting)
    plugins.symkd_entry_points.cache_clear()
    try:
        critics = plugins.Registry("symkd.critics", "critic").names()
        plugins.Registry("symkd.context", "context provider").names()
        plugins.entry_point_names(plugins.GROUPS)
    finally:
        plugins.symkd_entry_points.cache_clear()
    assert len(calls) == 1
    assert "rules" in critics  # symkd's own pipelines register theirs the same way
