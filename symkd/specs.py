"""Parsing ``name:key=value,key=value`` specs (critics, KD losses) the same way everywhere."""

from __future__ import annotations

from typing import Any

from symkd.errors import UserError


def coerce(value: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def parse_spec(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,...`` -> (name, options); ``what`` names the kind in errors."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise UserError(f"{what} spec {spec!r}: expected key=value, got {part!r}")
        options[key.strip().replace("-", "_")] = coerce(value.strip())
    return name.strip(), options
