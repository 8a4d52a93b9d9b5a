"""Each pipeline's run configuration is reachable from the package face (``symkd.DistillConfig``),
loaded on first use: ``import symkd`` alone still imports no pipeline and no pydantic."""

from __future__ import annotations

import subprocess
import sys

import pytest

import symkd

CONFIGS = {
    "DistillConfig": "symkd.pipelines.commonsense.config",
    "EvalConfig": "symkd.pipelines.commonsense.config",
    "AgentConfig": "symkd.pipelines.agents.options",
    "LearnConfig": "symkd.pipelines.strategies.options",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_config_is_the_pipelines_own_model(name):
    module = __import__(CONFIGS[name], fromlist=[name])
    assert getattr(symkd, name) is getattr(module, name)
    assert name in dir(symkd) and name in symkd.__all__


def test_a_config_checks_its_fields():
    config = symkd.DistillConfig(n_events=3)
    assert config.n_events == 3
    with pytest.raises(Exception, match="n_events"):
        symkd.DistillConfig(n_events="many")


def test_import_symkd_loads_no_pipeline_until_a_config_is_asked_for():
    code = ("import sys, symkd\n"
            "before = sorted(m for m in sys.modules if m.startswith('symkd.pipelines') or m == 'pydantic')\n"
            "symkd.LearnConfig\n"
            "print(before, 'symkd.pipelines.strategies.options' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] True"


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchConfig"):
        symkd.NoSuchConfig  # noqa: B018
