"""The wire side of the OpenAI backend: JSON over one pooled aiohttp session.

The OpenAI protocol symkd speaks is two calls — ``POST {base}/chat/completions`` (or
``/completions``) with a JSON body, and ``GET {base}/models`` for the preflight — and the
answer is read as plain JSON and checked in :mod:`symkd.teachers.openai_api` either way.

Why not the official ``openai`` SDK, which sent these requests before (measured on 2 cores,
Intel Xeon, 2026-12-02, ``bench/teacher_throughput.py --via cli``): importing ``openai``
costs 0.52 s (its pydantic types) and its httpx-compatible transport 0.08 s more, before the
first request can leave; building each request through ``AsyncAPIClient.post`` costs about
0.4 ms of CPU (py-spy: 11 % of all samples in ``_build_request`` alone). With it the whole
``symkd generate`` process reached 0.766 of the ideal rate at 64 requests in flight against
a 200 ms server, short of the 0.80 target, with no way to start sooner. The SDK's retries
were never used (they are the base class's), nor its typed models (the answer was already
taken as plain JSON), so what is left to do here is one request and one error type.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp

from symkd._version import __version__

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class HTTPStatusError(Exception):
    """The server answered with an error status; ``message`` is its own message when it sent one."""

    def __init__(self, status: int, message: str, headers: Any):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.headers = status, message, headers


class OpenAIHTTP:
    """One connection pool for every request of a teacher (created in the running event loop)."""

    def __init__(self, base_url: str | None, *, api_key: str, headers: dict[str, str] | None,
                 connections: int, timeout: float):  # fmt: skip
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": f"symkd/{__version__}",
                        **_organisation_headers(), **(headers or {})}  # fmt: skip
        self.connections, self.timeout = connections, timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer; raises HTTPStatusError, aiohttp/timeout errors or a JSON error."""
        data = json.dumps(body).encode()
        async with self._pool().post(self.base_url + path, data=data) as resp:
            return await _answer(resp)

    async def get(self, path: str, timeout: float | None = None) -> Any:
        limit = aiohttp.ClientTimeout(total=timeout) if timeout else None
        async with self._pool().get(self.base_url + path, timeout=limit) as resp:
            return await _answer(resp)

    def _pool(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=self.connections)
            self._session = aiohttp.ClientSession(connector=connector, headers=self.headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))  # fmt: skip
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None


async def _answer(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if resp.status >= 400:
        raise HTTPStatusError(resp.status, _error_message(raw, resp.reason), resp.headers)
    return json.loads(raw)


def _error_message(raw: bytes, reason: str | None) -> str:
    """The server's ``error.message`` (or ``message``), else the start of the body, else the reason phrase."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error", data)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if isinstance(message, str) and message.strip():
            return " ".join(message.split())[:300]
    text = " ".join(raw.decode("utf-8", "replace").split())[:300]
    return text or reason or "no message"


def _organisation_headers() -> dict[str, str]:
    """``OpenAI-Organization`` / ``OpenAI-Project`` from the environment, as the SDK reads them."""
    names = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}
    return {header: os.environ[var] for var, header in names.items() if os.environ.get(var)}
