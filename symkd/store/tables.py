"""Tables a pipeline owns, with migrations of its own.

The core schema (:mod:`symkd.store.schema`) knows no pipeline. A pipeline keeps its table
definitions beside its code and calls :func:`ensure_tables` before it writes::

    MIGRATIONS = [_v1_trajectories, _v2_add_source]          # never edit a released one
    ensure_tables(store, "agents", MIGRATIONS)

``meta`` then holds ``schema_version:agents``; a database written by a newer version of the
pipeline is refused with one line, as the core schema does. (The commonsense tables predate
this and live in core migrations v2/v3, which are never edited.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import sqlite_utils

from symkd.errors import UserError

if TYPE_CHECKING:
    from symkd.store.db import Store

Migration = Callable[[sqlite_utils.Database], None]


def owner_version(store: "Store", owner: str) -> int:
    value = store.meta(f"schema_version:{owner}")
    return int(value) if value else 0


def ensure_tables(store: "Store", owner: str, migrations: Sequence[Migration]) -> int:
    """Run ``owner``'s migrations that have not run on this store; return its version."""
    if owner_version(store, owner) == len(migrations):
        return len(migrations)  # the common case: no write lock taken
    return run_migrations(store, f"schema_version:{owner}", migrations, f"{owner} tables: version")


def run_migrations(store: "Store", key: str, migrations: Sequence[Migration], what: str) -> int:
    """In one transaction: the migrations after the version in ``meta[key]``, then the new version.

    The core schema (key ``schema_version``) and every pipeline's tables migrate through here.
    """
    with store.transaction() as db:
        if not db["meta"].exists():
            db["meta"].create({"key": str, "value": str}, pk="key")
        row = store.conn.execute("select value from meta where key = ?", (key,)).fetchone()
        current = int(row[0]) if row else 0
        if current > len(migrations):
            raise UserError(
                f"{store.path}: {what} {current} is newer than this symkd understands "
                f"({len(migrations)}); upgrade symkd"
            )
        for version in range(current, len(migrations)):
            migrations[version](db)
        db["meta"].upsert({"key": key, "value": str(len(migrations))}, pk="key")
    return len(migrations)
