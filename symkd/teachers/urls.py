"""Server URLs: what may be recorded, and what identifies an endpoint in cache keys.

Kept apart from the OpenAI backend so a fully cached replay can compute its keys without
importing any SDK.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

#: the official endpoint: keys for it carry no suffix, so databases made before endpoint
#: identity existed keep answering from their cache
OFFICIAL = "https://api.openai.com/v1"


def safe_url(url: str | None) -> str | None:
    """The URL without credentials or query string (safe to record)."""
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, netloc(parts), parts.path, "", ""))


def netloc(parts: SplitResult) -> str:
    """host[:port] without any user:password@ (IPv6 hosts keep their brackets)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def endpoint_identity(base_url: str | None) -> str:
    """The normalised server a cached answer came from ("" for the official OpenAI API).

    Scheme and host lower-cased, default ports dropped, no credentials, query or trailing
    slash: ``http://user:pw@LOCALHOST:8080/v1/`` -> ``http://localhost:8080/v1``.
    """
    if not base_url:
        return ""
    parts = urlsplit(base_url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    path = unquote(parts.path).rstrip("/")
    url = f"{scheme}://{host}{port}{path}"
    return "" if url == OFFICIAL else url


def model_at(model_id: str, base_url: str | None) -> str:
    """The model part of a cache key: ``model`` for the official API, ``model@endpoint`` otherwise."""
    endpoint = endpoint_identity(base_url)
    return f"{model_id}@{endpoint}" if endpoint else model_id


def plain_model(key_model: str) -> str:
    """The model name of a cache-key model part (``model@http://...`` -> ``model``)."""
    for scheme in ("@http://", "@https://"):
        if scheme in key_model:
            return key_model.split(scheme, 1)[0]
    return key_model
