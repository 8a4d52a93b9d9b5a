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

from typing import TYPE_CHECKING

import functools
import sqlite3
from typing import Callable, Sequence

from symkd.errors import UserError
from symkd.store.base import Store, load_sqlite_utils
from symkd.store.owners import core_migrations

if TYPE_CHECKING:
    import sqlite_utils

Migration = Callable[["sqlite_utils.Database"], None]


def owner_version(store: Store, owner: str) -> int:
    value = store.meta(f"schema_version:{owner}")
    return int(value) if value else 0


def check_owner_version(store: Store, owner: str, migrations: Sequence[Migration]) -> int:
    """``owner``'s recorded version; one line when it is newer than ``migrations`` know (read only)."""
    current = owner_version(store, owner) if _has_meta(store) else 0
    if current > len(migrations):
        raise UserError(
            f"{store.path}: {owner} tables: version {current} is newer than this symkd understands "
            f"({len(migrations)}); upgrade symkd"
        )
    return current


def _has_meta(store: Store) -> bool:
    return bool(store.scalar("select count(*) from sqlite_master where type = 'table' and name = 'meta'"))


def ensure_tables(store: Store, owner: str, migrations: Sequence[Migration]) -> int:
    """Run ``owner``'s migrations that have not run on this store; return its version."""
    current = check_owner_version(store, owner, migrations)
    if current == len(migrations):
        return len(migrations)  # the common case: no write lock taken
    if current == 0:
        refuse_foreign_tables(store, migrations, f"the {owner} tables")
    return run_migrations(store, f"schema_version:{owner}", migrations, f"{owner} tables: version")


def run_migrations(store: Store, key: str, migrations: Sequence[Migration], what: str) -> int:
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


@functools.lru_cache(maxsize=16)
def _expected(migrations: tuple[Migration, ...], core: bool) -> dict[str, frozenset[str]]:
    """The tables ``migrations`` create and their columns (run on an empty in-memory database,
    after the core schema for a pipeline's migrations)."""
    db = load_sqlite_utils().Database(memory=True)
    before: set[str] = set()
    if not core:
        for migration in core_migrations():
            migration(db)
        before = set(db.table_names())
    for migration in migrations:
        migration(db)
    return {name: frozenset(db[name].columns_dict) for name in db.table_names() if name not in before}


def foreign_tables(conn: sqlite3.Connection, migrations: Sequence[Migration], *, core: bool = False) -> list[str]:
    """Tables and views in ``conn`` that have a name ``migrations`` would create but are not
    what they would create (other columns, or a view): symkd cannot share a name with them."""
    expected = _expected(tuple(migrations), core)
    found = dict(conn.execute("select name, type from sqlite_master where type in ('table', 'view')").fetchall())
    clashes = []
    for name in sorted(set(found) & set(expected)):
        columns = {row[1] for row in conn.execute(f"pragma table_info({_quote(name)})")}
        if found[name] != "table" or columns != expected[name]:
            clashes.append(name)
    return clashes


def refuse_foreign_tables(store: Store, migrations: Sequence[Migration], what: str) -> None:
    """One line, nothing written, when the store holds someone else's table under a name of ours."""
    clashes = foreign_tables(store.conn, migrations)
    if clashes:
        raise UserError(clash_message(store.path, clashes, what))


def clash_message(path: object, clashes: Sequence[str], what: str) -> str:
    names = ", ".join(repr(c) for c in clashes[:5]) + (", ..." if len(clashes) > 5 else "")
    return (f"{path}: cannot add {what}: its own table(s) {names} have the same name but other columns; "
            "left unchanged")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rebuild_table(db: sqlite_utils.Database, name: str, create_sql: str) -> None:
    """Give ``name`` a new definition (new foreign keys, say) and keep every row: the table
    rebuild of https://www.sqlite.org/lang_altertable.html#otheralter (create the new table,
    copy the rows, drop the old one, rename, recreate its indexes).

    Call it inside a migration (one transaction). ``create_sql`` is the new ``create table``
    statement for ``name``; the columns both definitions share are copied, generated columns
    are computed again. Views that read ``name`` must be dropped first and created after.
    """
    temp = f"_symkd_new_{name}"
    indexes = [sql for (sql,) in db.execute(
        "select sql from sqlite_master where type = 'index' and tbl_name = ? and sql is not null", [name])]  # fmt: skip
    db.execute(f"drop table if exists {_quote(temp)}")
    db.execute(_renamed(create_sql, name, temp))
    old = {row[1] for row in db.execute(f"pragma table_info({_quote(name)})")}
    new = [row[1] for row in db.execute(f"pragma table_xinfo({_quote(temp)})") if row[6] == 0]  # 0 = stored, not generated
    shared = ", ".join(_quote(c) for c in new if c in old)
    db.execute(f"insert into {_quote(temp)} ({shared}) select {shared} from {_quote(name)} order by rowid")
    db.execute(f"drop table {_quote(name)}")
    db.execute(f"alter table {_quote(temp)} rename to {_quote(name)}")
    for sql in indexes:
        db.execute(sql)


def _renamed(create_sql: str, name: str, temp: str) -> str:
    head, sep, rest = create_sql.partition("(")
    words = head.split()
    if [w.lower() for w in words[:2]] != ["create", "table"] or words[-1].strip('"[]`') != name:
        raise ValueError(f"rebuild_table({name!r}): expected 'create table {name} (...)'")
    return f"create table {_quote(temp)} {sep}{rest}"


def create_view(db: sqlite_utils.Database, name: str, select_sql: str) -> None:
    """Create the view ``name`` unless the file has one by that name (a migration that changes
    a view drops it first: a view holds no rows, so replacing it loses nothing)."""
    db.execute(f"create view if not exists {_quote(name)} as {select_sql}")
