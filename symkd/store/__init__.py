"""SQLite store: schema, migrations, the request cache and run bookkeeping."""

from symkd.store.db import Store

__all__ = ["Store"]
