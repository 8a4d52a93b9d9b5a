"""A loopback OpenAI-compatible server with fault injection, for tests and benchmarks.

    python -m symkd.testing.openai_server --port 0 --latency-ms 200

prints ``READY <port>`` once it listens on 127.0.0.1. It answers ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions`` with deterministic text (an echo of the
input, so tests can check what arrived), honours ``n`` and ``logprobs``, and injects faults
asked for inside the prompt text::

    #fault=429x2       the first 2 tries of this request get 429 (Retry-After: --retry-after)
    #fault=500x1       ... a 500;   #fault=503x3 ... a 503
    #fault=hangx1      ... no answer for --hang-s seconds
    #fault=malformedx2 ... a 200 whose body is not JSON
    #fault=truncatedx1 ... a 200 whose body is cut short, then the connection dropped
    #fault=cutx1       ... a 200 whose body is cut short but complete by its Content-Length
                           (a proxy that truncated it), connection kept
    #fault=emptyx1     ... a 200 with {} (no choices)
    #fault=400x1       ... a 400 (not retryable)
    #fault=401x1       ... a 401 whose message echoes the Authorization header, as some
                           servers do (so a test can prove the key is redacted)
    #fault=401userx1   ... a 401 that names the decoded HTTP Basic user:password it got
    #fault=500xinf     ... always 500
    #ignore-n          answer one choice whatever ``n`` asks (like llama.cpp and Ollama)

Tries are counted per distinct request body. ``GET /stats`` returns ``total`` (requests to
the two completion endpoints), ``by_body`` (tries per body digest) and ``by_input`` (tries
per input text: the prompt, or the chat messages' contents joined by newlines), so a test
can prove that a resumed run did not send finished work again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import sys
from collections import Counter
from typing import Any

from aiohttp import web

_FAULT = re.compile(r"#fault=(\w+)x(\d+|inf)")


class FakeOpenAI:
    def __init__(self, latency_ms: float = 0.0, retry_after: float = 0.2, hang_s: float = 30.0):
        self.latency = latency_ms / 1000.0
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.attempts: Counter[str] = Counter()
        self.by_input: Counter[str] = Counter()
        self.total = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/stats", self.stats)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "symkd"}]})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"total": self.total, "by_body": dict(self.attempts), "by_input": dict(self.by_input)})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        return await self._answer(request, body, text, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(request, body, str(body.get("prompt", "")), chat=False)

    async def _answer(self, request: web.Request, body: dict, text: str, *, chat: bool) -> web.StreamResponse:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        self.attempts[digest] += 1
        self.by_input[text] += 1
        self.total += 1
        attempt = self.attempts[digest]
        if self.latency:
            await asyncio.sleep(self.latency)
        match = _FAULT.search(text)
        if match and (match.group(2) == "inf" or attempt <= int(match.group(2))):
            return await self._fault(request, match.group(1))
        n = 1 if "#ignore-n" in text else int(body.get("n") or 1)
        last_line = text.strip().splitlines()[-1] if text.strip() else ""
        choices = []
        for i in range(n):
            out = f"echo {i}: {last_line[-60:]}"
            max_tokens = int(body.get("max_tokens") or 16)
            words = out.split()[:max_tokens]
            out = " ".join(words)
            finish = "length" if len(words) == max_tokens else "stop"
            logprobs = [-0.1 * (j + 1) for j in range(len(words))]
            if chat:
                choice: dict[str, Any] = {
                    "index": i,
                    "message": {"role": "assistant", "content": out},
                    "finish_reason": finish,
                }
                if body.get("logprobs"):
                    choice["logprobs"] = {
                        "content": [{"token": w, "logprob": lp, "bytes": None, "top_logprobs": []} for w, lp in zip(words, logprobs)]
                    }
            else:
                choice = {"index": i, "text": out, "finish_reason": finish, "logprobs": None}
                if body.get("logprobs"):
                    choice["logprobs"] = {"tokens": words, "token_logprobs": logprobs, "top_logprobs": None, "text_offset": []}
            choices.append(choice)
        payload = {
            "id": f"cmpl-{digest}",
            "object": "chat.completion" if chat else "text_completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": {"prompt_tokens": len(text.split()), "completion_tokens": sum(len(c.get("text", c.get("message", {}).get("content", "")).split()) for c in choices), "total_tokens": 0},
        }
        return web.json_response(payload)

    async def _fault(self, request: web.Request, kind: str) -> web.StreamResponse:
        if kind in {"429", "500", "503", "400"}:
            headers = {"Retry-After": f"{self.retry_after:g}"} if kind == "429" else {}
            err = {"error": {"message": f"injected {kind}", "type": "injected", "code": kind}}
            return web.json_response(err, status=int(kind), headers=headers)
        if kind == "401":
            auth = request.headers.get("Authorization", "")
            err = {"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')}", "code": "invalid_api_key"}}
            return web.json_response(err, status=401)
        if kind == "401user":
            auth = request.headers.get("Authorization", "").removeprefix("Basic ")
            try:
                who = base64.b64decode(auth).decode()
            except ValueError:
                who = auth
            return web.json_response({"error": {"message": f"bad credentials {who}"}}, status=401)
        if kind == "cut":
            return web.Response(body=b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assi',
                                content_type="application/json")  # fmt: skip
        if kind == "hang":
            await asyncio.sleep(self.hang_s)
            return web.json_response({"error": {"message": "late"}}, status=504)
        if kind == "malformed":
            return web.Response(text='{"id": "x", "choices": [ this is not json', content_type="application/json")
        if kind == "empty":
            return web.json_response({})
        if kind == "truncated":
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Content-Length": "500"})
            await resp.prepare(request)
            await resp.write(b'{"id": "x", "choices": [{"index": 0, "message": {"role": "assi')
            if request.transport is not None:
                request.transport.close()
            return resp
        return web.json_response({"error": {"message": f"unknown fault {kind}"}}, status=400)


async def serve(port: int, **options: Any) -> None:
    server = FakeOpenAI(**options)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {bound}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.2)
    parser.add_argument("--hang-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, latency_ms=args.latency_ms, retry_after=args.retry_after, hang_s=args.hang_s))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
