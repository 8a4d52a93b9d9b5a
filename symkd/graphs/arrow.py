"""Arrow and Parquet helpers every curated-data export shares: fixed column types, UTC times
from the store's ISO texts, and the file's ``symkd.*`` key-value metadata."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from symkd.errors import UserError


def arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "time": pa.timestamp("us", tz="UTC")}[kind]


def parse_time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 text from the store as an aware UTC datetime (a time without zone is UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise UserError(f"{where}: created_at {str(value)[:40]!r} is not an ISO 8601 time") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def parquet_metadata(**info: Any) -> dict[bytes, bytes]:
    """Key-value file metadata: ``symkd.version`` plus ``symkd.<key>`` for each item (as JSON)."""
    from symkd._version import __version__

    meta = {b"symkd.version": __version__.encode()}
    meta.update({f"symkd.{k}".encode(): json.dumps(v, ensure_ascii=False).encode() for k, v in info.items()})
    return meta
