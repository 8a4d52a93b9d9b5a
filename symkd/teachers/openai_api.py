"""OpenAI-compatible backend (OpenAI, vLLM, llama.cpp server, Ollama, ...).

Builds and sends one request with the official SDK (AsyncOpenAI over aiohttp when
available); everything else — concurrency, limits, retries, failure records — is the base
class's. The API key is read from the environment and never stored or logged.
"""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from symkd.errors import TeacherUnavailable
from symkd.teachers.base import APITeacher, FatalRequestError, RetryableError, redact
from symkd.teachers.types import Completion, Request, Response, Usage

_RETRY_STATUS = {408, 409, 425, 429}


def safe_url(url: str | None) -> str | None:
    """The URL without credentials or query string (safe to record)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        endpoint: str = "auto",
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        max_retries: int = 6,
        timeout: float = 120.0,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
    ):
        super().__init__(
            model,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = os.environ.get(api_key_env)
        if not api_key:
            if not self.base_url:
                raise TeacherUnavailable(f"openai teacher needs an API key: set {api_key_env} (or pass --base-url)")
            api_key = "no-key"  # local servers ignore it
        self._secrets = [api_key]
        if endpoint not in {"auto", "chat", "completions"}:
            raise TeacherUnavailable(f"endpoint must be auto, chat or completions, not {endpoint!r}")
        self.endpoint = endpoint
        http_client = _http_client(concurrency)
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,  # retries are ours
            timeout=timeout,
            http_client=http_client,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base_url": safe_url(self.base_url), "endpoint": self.endpoint}

    async def preflight(self) -> None:
        """Fail fast with one clear line when the server cannot be reached or refuses the key."""
        try:
            await self.client.models.list(timeout=min(self.timeout, 10.0))
        except openai.AuthenticationError:
            raise TeacherUnavailable(f"{safe_url(self.base_url) or 'OpenAI'}: the API key was refused") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            where = safe_url(self.base_url) or "the OpenAI API"
            raise TeacherUnavailable(f"cannot reach {where}: {redact(str(exc), self._secrets)}") from None
        except (openai.APIError, ValueError, TypeError):
            pass  # some servers have no /models; the requests themselves will tell

    async def send(self, request: Request) -> Response:
        p = request.params
        completions: list[Completion] = []
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

    async def _call(self, request: Request, n: int, seed: int | None) -> tuple[list[Completion], Usage]:
        p = request.params
        common: dict[str, Any] = {
            "model": self.model,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
        }
        if n > 1:
            common["n"] = n
        if p.stop:
            common["stop"] = list(p.stop)
        if seed is not None:
            common["seed"] = seed
        try:
            if request.messages is not None and self.endpoint != "completions":
                if p.logprobs:
                    common["logprobs"] = True
                raw = await self.client.chat.completions.create(
                    messages=[m.model_dump() for m in request.messages], **common
                )
                return _parse_chat(raw), _usage(raw)
            if request.messages is not None:
                raise FatalRequestError("chat messages sent to a completions-only endpoint")
            if p.logprobs:
                common["logprobs"] = 1
            raw = await self.client.completions.create(prompt=request.prompt, **common)
            return _parse_completion(raw), _usage(raw)
        except openai.APIStatusError as exc:
            reason = f"HTTP {exc.status_code}: {_short(exc)}"
            if exc.status_code in _RETRY_STATUS or exc.status_code >= 500:
                raise RetryableError(reason, retry_after_seconds(exc.response.headers)) from None
            raise FatalRequestError(reason) from None
        except openai.APITimeoutError:
            raise RetryableError("request timed out") from None
        except openai.APIConnectionError as exc:
            raise RetryableError(f"connection error: {_short(exc)}") from None
        except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, KeyError) as exc:
            raise RetryableError(f"malformed response body: {type(exc).__name__}: {_short(exc)}") from None

    async def aclose(self) -> None:
        await self.client.close()


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    return text[:limit]


def _check_choices(raw: Any) -> list[Any]:
    choices = getattr(raw, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices in the response")
    return sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)


def _parse_chat(raw: Any) -> list[Completion]:
    out = []
    for choice in _check_choices(raw):
        message = choice.message
        text = message.content if message is not None else None
        if text is None and not getattr(message, "tool_calls", None):
            raise ValueError("a choice has no content")
        token_logprobs = None
        if getattr(choice, "logprobs", None) is not None and choice.logprobs.content is not None:
            token_logprobs = [float(t.logprob) for t in choice.logprobs.content]
        out.append(Completion(text=text or "", finish_reason=choice.finish_reason, token_logprobs=token_logprobs))
    return out


def _parse_completion(raw: Any) -> list[Completion]:
    out = []
    for choice in _check_choices(raw):
        if not isinstance(choice.text, str):
            raise ValueError("a choice has no text")
        token_logprobs = None
        lp = getattr(choice, "logprobs", None)
        if lp is not None and lp.token_logprobs is not None:
            token_logprobs = [float(x) for x in lp.token_logprobs if x is not None]
        out.append(Completion(text=choice.text, finish_reason=choice.finish_reason, token_logprobs=token_logprobs))
    return out


def _usage(raw: Any) -> Usage:
    u = getattr(raw, "usage", None)
    if u is None:
        return Usage()
    return Usage(prompt_tokens=u.prompt_tokens or 0, completion_tokens=u.completion_tokens or 0)


def _http_client(concurrency: int) -> Any:
    """aiohttp transport when installed (much faster at high concurrency), else httpx."""
    try:
        import aiohttp  # noqa: F401
        from openai import DefaultAioHttpClient
    except ImportError:
        import httpx

        limits = httpx.Limits(max_connections=max(100, concurrency), max_keepalive_connections=max(20, concurrency))
        return openai.DefaultAsyncHttpxClient(limits=limits)
    return DefaultAioHttpClient()
