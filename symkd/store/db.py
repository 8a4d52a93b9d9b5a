"""The run store: one SQLite file, managed with sqlite-utils.

:class:`Store` and its helpers live in :mod:`symkd.store.base` (which imports nothing of
``symkd.store``); this module is where callers take them from, and importing it loads the core
schema (:mod:`symkd.store.schema`), which registers what a Store checks and migrates on open.
"""

from __future__ import annotations

from symkd.store import schema as _schema  # noqa: F401  (registers the schema a Store opens with)
from symkd.store.base import (
    BUSY_TIMEOUT_S,
    Store,
    latest_version,
    opened,
    set_adopt_default,
    to_json,
    utcnow,
    version_key,
)

__all__ = [
    "BUSY_TIMEOUT_S", "Store", "latest_version", "opened", "set_adopt_default", "to_json", "utcnow",
    "version_key",
]  # fmt: skip
