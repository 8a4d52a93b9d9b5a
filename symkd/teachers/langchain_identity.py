"""Cache identity of a LangChain chat model: its class, model name and parameters, no secrets.

The cache identity (``model_id``) is ``ClassName:model_name#digest`` (``ClassName#digest`` when
the model names no model): the digest hashes the model's identifying parameters (LangChain's
``_identifying_params`` over its ``model_dump()``: temperature, base URL, a fake model's
responses...), so two models of one class with different settings never share answers and
equal settings do. Secrets never enter it: SecretStr fields, fields and dict keys named like
a key/token/secret/password/header, and anything shaped like an API key are left out; fields
that change how a call is made but not what it answers (retries, timeouts, callbacks,
streaming, a fake model's position counter ``i``) are left out too; a value that is not JSON
counts by its type.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from symkd.teachers.base import redact

_NAME_ATTRS = ("model_name", "model", "model_id", "deployment_name", "repo_id")


def identity(chat_model: Any) -> str:
    """``ClassName:model_name#digest`` (or ``ClassName#digest``): a stable, secret-free cache identity."""
    cls = type(chat_model).__name__
    digest = hashlib.sha256(json.dumps(identity_params(chat_model), sort_keys=True).encode()).hexdigest()[:12]
    for attr in _NAME_ATTRS:
        try:
            value = getattr(chat_model, attr, None)
        except Exception:  # a property that fails is no name
            value = None
        if isinstance(value, str) and value:
            return f"{cls}:{value}#{digest}"
    return f"{cls}#{digest}"


def identity_params(chat_model: Any) -> dict[str, Any]:
    """The parameters that decide a model's answers, as JSON, without secrets (see the module doc)."""
    try:
        dumped = chat_model.model_dump()
    except Exception:  # a field pydantic cannot dump: the declared identifying parameters only
        dumped = {}
    try:
        declared = dict(chat_model._identifying_params)
    except Exception:
        declared = {}
    secret_fields = {f for f in _field_names(chat_model) if _is_secret(getattr(chat_model, f, None))}
    merged = {k: v for k, v in {**dumped, **declared}.items() if k not in _CALL_ONLY and k not in secret_fields}
    return _clean(merged)  # secret-named keys go here, at every depth


#: fields that change how a call is made, not what it answers (and FakeListChatModel's counter ``i``)
_CALL_ONLY = frozenset({
    "name", "cache", "verbose", "callbacks", "callback_manager", "tags", "metadata", "rate_limiter",
    "custom_get_token_ids", "disable_streaming", "streaming", "stream", "stream_usage", "output_version",
    "max_retries", "request_timeout", "timeout", "http_client", "http_async_client", "client", "async_client",
    "include_response_headers", "i", "sleep", "error_on_chunk_number",
})  # fmt: skip
#: names of fields and dict keys whose values may be credentials (``openai_api_key``, ``hf_token``, headers)
_SECRET_NAME = re.compile(r"(?i)(^|_)(api_?key|key|secret|password|passwd|token|credentials?|auth|authorization|"
                          r"headers?|cookies?)$")


def _is_secret(value: Any) -> bool:
    return callable(getattr(value, "get_secret_value", None))


def _clean(value: Any) -> Any:
    """JSON-safe and secret-free: secret-named keys dropped, key-shaped strings redacted."""
    if _is_secret(value):
        return "***"
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()
                if not _SECRET_NAME.search(str(k))}  # fmt: skip
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _plain_url(redact(value))
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return f"<{type(value).__name__}>"


def _plain_url(text: str) -> str:
    """A URL without user:password@ or query string (both may carry credentials)."""
    if not text.startswith(("http://", "https://")):
        return text
    from symkd.teachers.urls import safe_url

    return safe_url(text) or text


def _field_names(chat_model: Any) -> set[str]:
    return set(getattr(type(chat_model), "model_fields", {}) or {})
