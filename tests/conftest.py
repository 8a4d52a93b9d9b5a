"""Shared fixtures. Each fixture family lives in tests/fixtures/ and is imported here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.fake_openai import fake_openai, slow_openai  # noqa: F401
from tests.fixtures.llama_server import llama_server  # noqa: F401
from tests.fixtures.tiny_lm import tiny_lm  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "run.db"
