"""Datasette metadata for a run store, from descriptions declared beside the table definitions.

Every module that defines tables also describes them, in the same file, with
:func:`register_tables` (:mod:`symkd.store.owners`): the core schema in :mod:`symkd.store.schema`,
each pipeline in its own ``tables`` module (the core knows no pipeline; a pipeline's descriptions
are known once its tables module is imported: those of the ``symkd.tables`` entry-point group
always, the others through :func:`load_table_modules`). :func:`metadata` turns the descriptions of the tables and views a
database holds into Datasette's metadata (title, table, column and view descriptions, the label
column shown beside a foreign key that points at a table, default facets)::

    symkd datasette-metadata run.db --out metadata.json
    datasette run.db -m metadata.json
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from symkd.store.base import Store
from symkd.store.owners import Owner, TableDoc, opened_with_every_store, register_tables, registered
from symkd.store.tables import ensure_tables, owner_version

__all__ = [
    "Owner", "TableDoc", "load_table_modules", "metadata", "owners", "register_tables", "table_docs",
    "upgrade_pipelines", "write_metadata",
]  # fmt: skip


def owners() -> dict[str, Owner]:
    """Every owner declared so far, those of the ``symkd.tables`` entry-point group loaded first."""
    opened_with_every_store()
    return registered()


def table_docs() -> dict[str, TableDoc]:
    """Every declared table and view by name. An owner may describe columns it adds to another
    owner's table (a TableDoc with an empty description): they are merged in."""
    merged: dict[str, TableDoc] = {}
    for owner in owners().values():
        for doc in owner.docs:
            known = merged.get(doc.name)
            if known is None:
                merged[doc.name] = doc
                continue
            main, extra = (doc, known) if doc.description and not known.description else (known, doc)
            merged[doc.name] = replace(main, columns={**extra.columns, **main.columns})
    return merged


def load_table_modules(targets: Mapping[str, Any]) -> list[str]:
    """Import the ``tables`` module beside each pipeline's registered target (``pkg.cli:register``
    -> ``pkg.tables``), where there is one, so its tables are described; return those imported."""
    import importlib.util

    loaded = []
    for target in targets.values():
        module = target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", "")
        name = module.rpartition(".")[0] + ".tables"
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


def upgrade_pipelines(store: Store) -> list[str]:
    """Bring the tables of every registered pipeline the store already has up to date (their
    new views and foreign keys come with it); return the owners upgraded."""
    done = []
    for owner in owners().values():
        if owner.name != "core" and owner_version(store, owner.name):
            ensure_tables(store, owner.name, owner.migrations)
            done.append(owner.name)
    return done


def metadata(store: Store, *, database: str | None = None, title: str | None = None) -> dict[str, Any]:
    """Datasette metadata for the tables and views ``store`` holds that symkd describes."""
    database = database or store.path.stem
    docs = table_docs()
    present = store.query("select name, type from sqlite_master where type in ('table', 'view') order by name")
    tables = {row["name"]: _table_entry(store, docs[row["name"]]) for row in present if row["name"] in docs}
    return {
        "title": title or f"symkd: {store.path.name}",
        "description": "A symkd run store: teacher requests and answers, curated knowledge with its "
        "critic scores, and the provenance that links each row to the run that made it.",
        "databases": {database: {"tables": tables}},
    }


def _table_entry(store: Store, doc: TableDoc) -> dict[str, Any]:
    present = {row["name"] for row in store.query(f"select name from pragma_table_xinfo({_literal(doc.name)})")}
    entry: dict[str, Any] = {"description": doc.description}
    entry["columns"] = {name: text for name, text in doc.columns.items() if name in present}
    if doc.label and doc.label in present:
        entry["label_column"] = doc.label
    facets = [name for name in doc.facets if name in present]
    if facets:
        entry["facets"] = facets
    return entry


def write_metadata(store: Store, out: Path | None, *, title: str | None = None) -> dict[str, Any]:
    """Upgrade the pipelines' tables, then write the metadata as JSON to ``out`` (or return it)."""
    upgrade_pipelines(store)
    document = metadata(store, title=title)
    if out is not None:
        out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return document


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
