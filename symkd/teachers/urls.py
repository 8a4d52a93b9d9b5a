"""Server URLs: what may be recorded, and what identifies an endpoint in cache keys.

Kept apart from the OpenAI backend so a fully cached replay can compute its keys without
importing any SDK.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@")

#: the official endpoint: keys for it carry no suffix, so databases made before endpoint
#: identity existed keep answering from their cache
OFFICIAL = "https://api.openai.com/v1"


def check_base_url(url: str) -> str:
    """``url`` when it names an HTTP(S) server symkd can reach; else ValueError saying why
    (the message never repeats the URL, which may hold credentials)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"not a usable server URL ({_reason(exc)})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("not a usable server URL (it must start with http:// or https://)")
    if not parts.hostname:
        raise ValueError("not a usable server URL (no host name)")
    if port == 0:
        raise ValueError("not a usable server URL (port 0)")
    return url


def server_url(base_url: str | None) -> str | None:
    """The server to use: ``base_url``, else ``$OPENAI_BASE_URL``; a bad one is a UserError."""
    import os

    from symkd.errors import UserError

    where = "--base-url" if base_url else "OPENAI_BASE_URL"
    url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    if url is not None:
        try:
            check_base_url(url)
        except ValueError as exc:
            raise UserError(f"{where}: {exc} (got {redact_credentials(repr(url))})") from None
    return url


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if "out of range" in text:
        return "the port is out of range 1-65535"
    if "Port" in text:
        return "the port is not a number"
    if "IPv6" in text:
        return "an IPv6 address without its closing ]"
    return text.split(":")[0]


def redact_credentials(text: str) -> str:
    """``text`` with any ``user:password@`` after a URL scheme written as ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", text)


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
