"""Who owns which tables: the core schema and each pipeline declare their migrations and their
table descriptions here (imports nothing of ``symkd.store``; the other store modules build on it).

* :func:`register_tables` is called by every module that defines tables, beside the definitions:
  ``"core"`` by :mod:`symkd.store.schema`, a pipeline by its own ``tables`` module (its name is
  the ``<owner>`` of ``meta.schema_version:<owner>``).
* The ``symkd.tables`` entry-point group names the owners whose tables every store gets when it
  is opened for writing, because core commands read them (a database that already holds them
  from an older symkd has them adopted and its owner version recorded)::

      [project.entry-points."symkd.tables"]
      commonsense = "symkd.pipelines.commonsense.tables:OWNER"

  The core finds them there, never by a pipeline's name written in its code. Other pipelines'
  tables are made when the pipeline first writes (``ensure_tables``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from symkd.plugins import Registry

Migration = Callable[..., None]

#: owners whose tables every store opened for writing gets (see the module docstring)
OPENED_WITH_EVERY_STORE = Registry("symkd.tables", "table owner")


@dataclass(frozen=True)
class TableDoc:
    """What a table or view holds, declared where it is defined."""

    name: str
    description: str
    columns: Mapping[str, str] = field(default_factory=dict)
    #: the column Datasette shows beside a foreign key that points at this table
    label: str | None = None
    #: columns Datasette offers as facets when the table is opened
    facets: Sequence[str] = ()


@dataclass(frozen=True)
class Owner:
    """The tables one part of symkd owns: its migrations and its descriptions."""

    name: str
    migrations: Sequence[Migration]
    docs: Sequence[TableDoc]


_OWNERS: dict[str, Owner] = {}


def register_tables(owner: str, migrations: Sequence[Migration], docs: Sequence[TableDoc]) -> Owner:
    """Declare ``owner``'s tables and views (``"core"`` for the core schema, else the pipeline's
    name, as in ``meta.schema_version:<owner>``); return the :class:`Owner`."""
    declared = Owner(owner, list(migrations), list(docs))
    _OWNERS[owner] = declared
    return declared


def registered() -> dict[str, Owner]:
    """The owners declared so far (the core's once :mod:`symkd.store.schema` is imported)."""
    return dict(_OWNERS)


def core_migrations() -> Sequence[Migration]:
    core = _OWNERS.get("core")
    if core is None:  # importing symkd.store imports the schema, which registers it
        raise RuntimeError("symkd.store.schema is not loaded (import symkd.store first)")
    return core.migrations


def opened_with_every_store() -> list[Owner]:
    """The owners of the ``symkd.tables`` entry-point group, loaded (which also registers them)."""
    found = []
    for name in OPENED_WITH_EVERY_STORE.names():
        owner = OPENED_WITH_EVERY_STORE.load(name)
        if not isinstance(owner, Owner):
            raise TypeError(f"entry point symkd.tables {name!r}: expected a symkd.store.owners.Owner, got {owner!r}")
        found.append(owner)
    return found
