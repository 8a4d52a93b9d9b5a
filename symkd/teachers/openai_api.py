"""OpenAI-compatible backend (OpenAI, vLLM, llama.cpp server, Ollama, ...).

Builds one request and reads its answer; everything else — concurrency, limits, retries,
failure records — is the base class's. The API key is read from the environment and never
stored or logged; neither are credentials written into ``--base-url`` (they are sent as HTTP
Basic auth). Requests go out as plain JSON through :mod:`symkd.teachers.openai_http` (why not
the official SDK is measured there) and answers come back as plain JSON, checked and parsed
here; anything malformed becomes a retryable error naming the problem.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from symkd.errors import TeacherUnavailable
from symkd.teachers.base import APITeacher, FatalRequestError, RetryableError, redact
from symkd.teachers.openai_http import HTTPStatusError, OpenAIHTTP
from symkd.teachers.messages import Completion, Request, Response, Usage
from symkd.teachers.urls import netloc, model_at, safe_url, server_url

_RETRY_STATUS = {408, 409, 425, 429}


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (delta seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class OpenAITeacher(APITeacher):
    """``openai:MODEL`` — chat requests go to ``/chat/completions``, raw prompts to ``/completions``.

    ``endpoint`` pins one of them (``chat`` / ``completions``); a request the pinned endpoint
    cannot take fails without being sent. The key comes from ``$api_key_env``; a local
    server (``base_url``) may need none.
    """

    backend = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 endpoint: str = "auto", **pacing: Any):  # fmt: skip
        super().__init__(model, **pacing)
        self.base_url = server_url(base_url)
        api_key = os.environ.get(api_key_env)
        if api_key:
            self._secrets.append(api_key)
        elif not self.base_url:
            raise TeacherUnavailable(f"openai teacher needs an API key: set {api_key_env} (or pass --base-url)")
        else:
            api_key = "no-key"  # local servers ignore it
        client_url, headers = _split_credentials(self.base_url)
        if headers:
            token = headers["Authorization"].split()[1]
            parts = urlsplit(self.base_url)
            # both halves (a key is often put in the user name), as written in the URL and as
            # sent (percent-encoded text is sent decoded)
            given = (parts.username, parts.password)
            self._secrets += [s for v in given for s in (v, unquote(v or "")) if s] + [token]
        if endpoint not in {"auto", "chat", "completions"}:
            raise TeacherUnavailable(f"endpoint must be auto, chat or completions, not {endpoint!r}")
        self.endpoint = endpoint
        self.http = OpenAIHTTP(client_url, api_key=api_key, headers=headers, connections=max(1000, self.concurrency + 8),
                               timeout=self.timeout)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base_url": safe_url(self.base_url), "endpoint": self.endpoint}

    def cache_identity(self) -> tuple[str, str]:
        """Answers are keyed by the server too: two servers may serve different models under one name."""
        return self.backend, model_at(self.model_id, self.base_url)

    async def preflight(self) -> None:
        """Fail fast with one clear line when the server cannot be reached or refuses the key."""
        try:
            await self.http.get("/models", timeout=min(self.timeout, 10.0))
        except HTTPStatusError as exc:
            if exc.status == 401:
                raise TeacherUnavailable(f"{safe_url(self.base_url) or 'OpenAI'}: the API key was refused") from None
            # some servers have no /models; the requests themselves will tell
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            where = safe_url(self.base_url) or "the OpenAI API"
            raise TeacherUnavailable(f"cannot reach {where}: {redact(_transport_reason(exc), self._secrets)}") from None
        except ValueError:
            pass  # not JSON: the requests themselves will tell

    async def send(self, request: Request) -> Response:
        p = request.params
        if p.n == 1:  # the common case: one call, nothing to merge
            completions, usage = await self._call(request, 1, p.seed)
            return Response(completions=completions[:1], usage=usage)
        completions = []
        usage = Usage()
        # Some servers (llama.cpp, Ollama) ignore n>1: ask again for what is missing.
        for _ in range(p.n):
            missing = p.n - len(completions)
            if missing <= 0:
                break
            seed = None if p.seed is None else p.seed + len(completions)
            got, used = await self._call(request, missing, seed)
            completions.extend(got[:missing])
            usage.prompt_tokens += used.prompt_tokens
            usage.completion_tokens += used.completion_tokens
        return Response(completions=completions, usage=usage)

    def _body(self, request: Request, n: int, seed: int | None) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of one call."""
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if p.stop:
            body["stop"] = list(p.stop)
        if seed is not None:
            body["seed"] = seed
        if request.messages is not None:
            if self.endpoint == "completions":
                raise FatalRequestError("chat messages sent to a completions-only endpoint")
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            if p.logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = 0  # llama.cpp's server returns no logprobs without it
            return "/chat/completions", body
        if self.endpoint == "chat":
            raise FatalRequestError("a raw prompt sent to a chat-only endpoint")
        body["prompt"] = request.prompt
        if p.logprobs:
            body["logprobs"] = 1
        return "/completions", body

    async def _call(self, request: Request, n: int, seed: int | None) -> tuple[list[Completion], Usage]:
        path, body = self._body(request, n, seed)
        try:
            raw = await self.http.post(path, body)
        except HTTPStatusError as exc:
            reason = f"HTTP {exc.status}: {exc.message}"
            if exc.status in _RETRY_STATUS or exc.status >= 500:
                raise RetryableError(reason, retry_after_seconds(exc.headers)) from None
            raise FatalRequestError(reason) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # before ValueError: InvalidURL is both
            raise RetryableError(_transport_reason(exc)) from None
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise RetryableError(_body_reason(exc)) from None
        try:
            parse = _parse_chat if path == "/chat/completions" else _parse_completion
            return parse(raw), _usage(raw)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise RetryableError(f"malformed response body: {_short(exc)}") from None

    async def aclose(self) -> None:
        await self.http.close()


def _split_credentials(url: str | None) -> tuple[str | None, dict[str, str] | None]:
    """``http://user:pass@host/v1`` -> (``http://host/v1``, an HTTP Basic Authorization header).

    Credentials written into the URL are sent as HTTP Basic auth, as curl, requests and
    httpx do; they then take the place of the bearer API key on that server. aiohttp
    refuses a URL with credentials next to an Authorization header, so they are moved out.
    """
    if not url:
        return url, None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    plain = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    header = {"Authorization": "Basic " + base64.b64encode(plain.encode()).decode()}
    return urlunsplit((parts.scheme, netloc(parts), parts.path, parts.query, parts.fragment)), header


def _body_reason(exc: BaseException) -> str:
    """"truncated" when the JSON stopped before it was complete (the body ran out at the
    parser's error), "malformed" when it is wrong somewhere inside."""
    error = exc
    while error is not None and not isinstance(error, json.JSONDecodeError):
        error = error.__cause__ or error.__context__
    if isinstance(error, json.JSONDecodeError):
        ended = error.msg.startswith("Unterminated") or error.pos >= len(error.doc.rstrip())
        if ended:
            return f"truncated response body: the JSON ends after {len(error.doc)} characters ({error.msg})"
    return f"malformed response body: {type(exc).__name__}: {_short(exc)}"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    return text[:limit] or type(exc).__name__


#: aiohttp's errors for a body that stopped short of what was announced
_TRUNCATED = {"ClientPayloadError", "ContentLengthError", "TransferEncodingError"}


def _transport_reason(exc: BaseException) -> str:
    """Name what went wrong on the wire: truncated body, timeout or connection error, with the root cause."""
    chain = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 8:
        chain.append(nxt)
    root = chain[-1]
    detail = f"{type(root).__name__}: {_short(root)}" if root is not exc else _short(exc)
    if any(type(e).__name__ in _TRUNCATED for e in chain):
        return f"truncated response body: {detail}"
    if "Timeout" in type(root).__name__ or isinstance(root, TimeoutError):
        return f"request timed out ({detail})"
    return f"connection error: {detail}"


def _choices(raw: Any) -> list[dict]:
    if not isinstance(raw, dict):
        raise ValueError(f"the body is not a JSON object ({type(raw).__name__})")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices in the response")
    if not all(isinstance(c, dict) for c in choices):
        raise ValueError("a choice is not a JSON object")
    return sorted(choices, key=lambda c: c.get("index") or 0) if len(choices) > 1 else choices


def _parse_chat(raw: Any) -> list[Completion]:
    out = []
    for choice in _choices(raw):
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ValueError("a choice has no message")
        text = message.get("content")
        if text is None and not message.get("tool_calls"):
            raise ValueError("a choice has no content")
        if text is not None and not isinstance(text, str):
            raise ValueError("a choice's content is not text")
        token_logprobs = None
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and logprobs.get("content") is not None:
            token_logprobs = [float(t["logprob"]) for t in logprobs["content"]]
        out.append(Completion(text=text or "", finish_reason=choice.get("finish_reason"), token_logprobs=token_logprobs))
    return out


def _parse_completion(raw: Any) -> list[Completion]:
    out = []
    for choice in _choices(raw):
        text = choice.get("text")
        if not isinstance(text, str):
            raise ValueError("a choice has no text")
        token_logprobs = None
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and logprobs.get("token_logprobs") is not None:
            token_logprobs = [float(x) for x in logprobs["token_logprobs"] if x is not None]
        out.append(Completion(text=text, finish_reason=choice.get("finish_reason"), token_logprobs=token_logprobs))
    return out


def _usage(raw: dict) -> Usage:
    u = raw.get("usage")
    if not isinstance(u, dict):
        return Usage()
    return Usage(prompt_tokens=u.get("prompt_tokens") or 0, completion_tokens=u.get("completion_tokens") or 0)
