"""LangChain backend: any ``BaseChatModel`` as a teacher.

``LangChainTeacher(model)`` takes a chat model instance (Python API) or a string
``package.module:attr`` (CLI spec ``langchain:package.module:attr``) where ``attr`` is a
``BaseChatModel`` instance or a zero-argument callable returning one. Like ``python -m``, the
current directory is searched for the module when it is not importable otherwise.

How one request is sent (:meth:`LangChainTeacher.send`):

* messages become LangChain message objects (system -> ``SystemMessage``, user ->
  ``HumanMessage``, assistant -> ``AIMessage``, tool -> ``ToolMessage``); a completion
  request (raw ``prompt``) is sent as a single ``HumanMessage``;
* ``stop`` goes to ``ainvoke(stop=...)`` (every chat model's signature has it) and is also
  applied to the returned text, for models that ignore it;
* temperature, top_p, max_tokens, seed and logprobs are passed as ``ainvoke`` keyword
  arguments (LangChain's call-time override of a model's settings) **only when the model
  declares a field of that name** (``max_tokens`` also maps to ``max_completion_tokens`` /
  ``max_output_tokens`` / ``num_predict`` / ``max_new_tokens``). A model that declares
  none of them receives no extra keyword arguments, so models that reject unknown ones
  keep working; such a model samples with its own settings;
* ``n > 1`` asks ``n`` times (with ``seed + i`` when a seed is given and supported).

Errors: timeouts, connection errors, rate limits, HTTP 408/409/425/429/5xx -> retryable;
so is "Event loop is closed": langchain-openai caches one async HTTP client per process, and
in a second ``symkd.generate`` call (a new event loop) its first tries can pick a pooled
connection of the closed loop; the next try gets a fresh one. Everything else -> a recorded
failure. Provider exceptions are recognised by their
``status_code`` (openai, anthropic, httpx's ``response.status_code``) and by their class
names (``APITimeoutError``, ``RateLimitError``, ``ConnectError``...), so no provider SDK is
imported here. Wrap models with their own retries turned off (``max_retries=0``) to let
symkd own them.

Why no override of ``agenerate`` (LangChain's ``abatch``): the base worker pool already
gives bounded concurrency (``concurrency`` requests in flight, one ``ainvoke`` each), and it
is what keeps per-request retries with backoff, RPM/TPM limits, per-try timeouts and a
failure record per request. ``abatch`` offers none of those per item, so routing through it
would either lose them or re-implement the base class; a chat model's own batching is an
``ainvoke`` per input anyway.

The cache identity (``model_id``) comes from the model's parameters, never its secrets: see
:mod:`symkd.teachers.langchain_identity`. Pass ``name=`` to set it yourself.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from symkd.errors import TeacherUnavailable
from symkd.teachers.base import APITeacher, FatalRequestError, RetryableError
from symkd.teachers.langchain_identity import identity
from symkd.teachers.messages import Completion, GenerationParams, Request, Response, Usage

_RETRY_STATUS = {408, 409, 425, 429}
#: parts of exception class names (lower case, any class in the MRO) that mean "try again"
_RETRY_NAMES = (
    "timeout",
    "ratelimit",
    "connect",
    "network",
    "overloaded",
    "unavailable",
    "toomanyrequests",
    "throttl",
    "serverdisconnected",
    "remoteprotocol",
    "internalserver",
)
#: symkd parameter -> model field names that carry it, in order of preference
_PARAM_FIELDS: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "max_tokens": ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict", "max_new_tokens"),
    "seed": ("seed",),
    "logprobs": ("logprobs",),
}


class LangChainTeacher(APITeacher):
    backend = "langchain"

    pacing_defaults = {"concurrency": 8}

    def __init__(self, model: BaseChatModel | str, *, name: str | None = None, **pacing: Any):
        chat_model = load_chat_model(model) if isinstance(model, str) else model
        if not isinstance(chat_model, BaseChatModel):
            raise TeacherUnavailable(
                f"langchain teacher needs a BaseChatModel, got {type(chat_model).__name__}"
            )
        self.chat_model = chat_model
        super().__init__(model if isinstance(model, str) else identity(chat_model), **pacing)
        self.model_id = name or identity(chat_model)
        fields = _field_names(chat_model)
        #: symkd parameter -> the field name it is passed as (only those the model declares)
        self.param_fields = {
            param: next(f for f in candidates if f in fields)
            for param, candidates in _PARAM_FIELDS.items()
            if any(f in fields for f in candidates)
        }
        self._top_logprobs = "top_logprobs" in fields
        self._secrets = _secret_values(chat_model)

    def describe(self) -> dict[str, Any]:
        cls = type(self.chat_model)
        return {
            **super().describe(),
            "chat_model": f"{cls.__module__}.{cls.__qualname__}",
            "passes": sorted(self.param_fields),
        }

    def call_kwargs(self, params: GenerationParams, sample: int) -> dict[str, Any]:
        """Keyword arguments for ``ainvoke`` for sample number ``sample`` of a request."""
        values: dict[str, Any] = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.seed is not None:
            values["seed"] = params.seed + sample
        if params.logprobs:
            values["logprobs"] = True
        kwargs = {self.param_fields[k]: v for k, v in values.items() if k in self.param_fields}
        if "logprobs" in kwargs and self._top_logprobs:
            kwargs["top_logprobs"] = 0  # some servers (llama.cpp) send none without it
        return kwargs

    async def send(self, request: Request) -> Response:
        p = request.params
        messages = to_langchain_messages(request)
        stop = list(p.stop) or None
        completions: list[Completion] = []
        usage = Usage()
        for sample in range(p.n):
            try:
                message = await self.chat_model.ainvoke(messages, stop=stop, **self.call_kwargs(p, sample))
            except (RetryableError, FatalRequestError):
                raise
            except Exception as exc:  # provider errors: sorted into retry / fatal
                raise classify(exc) from None
            if not isinstance(message, BaseMessage):
                raise RetryableError(f"malformed answer: {type(message).__name__} instead of a message")
            completions.append(to_completion(message, p.stop))
            used = getattr(message, "usage_metadata", None) or {}
            usage.prompt_tokens += int(used.get("input_tokens") or 0)
            usage.completion_tokens += int(used.get("output_tokens") or 0)
        return Response(completions=completions, usage=usage)


def load_chat_model(path: str) -> BaseChatModel:
    """Import ``package.module:attr``; attr is a chat model or a zero-argument factory of one."""
    module_name, sep, attr = path.strip().partition(":")
    if not sep or not module_name or not attr:
        raise TeacherUnavailable(
            f"langchain teacher {path!r}: use langchain:package.module:attr "
            "(attr: a BaseChatModel or a function returning one)"
        )
    module = _import(module_name, path)
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TeacherUnavailable(f"langchain teacher {path!r}: module {module_name} has no {attr!r}") from None
    if isinstance(target, BaseChatModel):
        return target
    if not callable(target):
        raise TeacherUnavailable(
            f"langchain teacher {path!r}: {attr} is a {type(target).__name__}, not a chat model or a function"
        )
    try:
        made = target()
    except Exception as exc:
        raise TeacherUnavailable(
            f"langchain teacher {path!r}: {attr}() failed: {type(exc).__name__}: {_short(exc)}"
        ) from None
    if not isinstance(made, BaseChatModel):
        raise TeacherUnavailable(
            f"langchain teacher {path!r}: {attr}() returned {type(made).__name__}, not a BaseChatModel"
        )
    return made


def _import(module_name: str, path: str) -> Any:
    try:
        return import_nearby(module_name)
    except ModuleNotFoundError as exc:
        raise TeacherUnavailable(f"langchain teacher {path!r}: cannot import {module_name}: {exc}") from None
    except Exception as exc:
        raise TeacherUnavailable(
            f"langchain teacher {path!r}: importing {module_name} failed: {type(exc).__name__}: {_short(exc)}"
        ) from None


def import_nearby(module_name: str, folder: str | None = None) -> Any:
    """Import ``module_name``; like ``python -m``, the current directory (or ``folder``: where the
    driver found it, for a Ray worker) is searched for it when it is not importable otherwise
    (``--teacher langchain:my_mod:x``, ``--tools my_mod:x``)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        where = folder or os.getcwd()
        if exc.name != module_name.split(".")[0] or where in sys.path or (folder is None and "" in sys.path):
            raise
        sys.path.insert(0, where)  # as `python -m` would: find modules next to the user
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            sys.path.remove(where)
            raise exc from None


def import_root(module_name: str) -> str | None:
    """The folder on ``sys.path`` that ``module_name`` (imported already) was found in, so that a
    process elsewhere (a Ray worker, whose cwd is not ours) can import it the same way; None for
    ``__main__`` or a module without a file."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "__main__" or not file:
        return None
    path = Path(os.path.abspath(file))
    return str(path.parents[module_name.count(".") + (path.stem == "__init__")])


def to_langchain_messages(request: Request) -> list[BaseMessage]:
    if request.messages is None:
        return [HumanMessage(content=request.prompt or "")]
    out: list[BaseMessage] = []
    for m in request.messages:
        if m.role == "system":
            out.append(SystemMessage(content=m.content))
        elif m.role == "user":
            out.append(HumanMessage(content=m.content))
        elif m.role == "assistant":
            out.append(AIMessage(content=m.content))
        else:
            out.append(ToolMessage(content=m.content, tool_call_id=""))
    return out


def to_completion(message: BaseMessage, stop: Sequence[str] = ()) -> Completion:
    text = message_text(message)
    meta = getattr(message, "response_metadata", None) or {}
    finish = meta.get("finish_reason") or meta.get("stop_reason") or meta.get("done_reason")
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut >= 0:  # the model ignored the stop strings: apply them here
        text, finish = text[:cut], "stop"
    return Completion(text=text, finish_reason=finish, token_logprobs=_logprobs(meta))


def message_text(message: BaseMessage) -> str:
    """The text of a message whose content is a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _logprobs(meta: dict[str, Any]) -> list[float] | None:
    """Per-token logprobs from OpenAI-style ``response_metadata['logprobs']['content']``."""
    lp = meta.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(content, list):
        return None
    try:
        return [float(t["logprob"]) for t in content]
    except (KeyError, TypeError, ValueError):
        return None


def classify(exc: BaseException) -> RetryableError | FatalRequestError:
    """Sort a provider's exception into retry-worthy or final."""
    reason = f"{type(exc).__name__}: {_short(exc)}"
    status = _status_code(exc)
    if status is not None:
        if status in _RETRY_STATUS or status >= 500:
            return RetryableError(f"HTTP {status}: {reason}", _retry_after(exc))
        return FatalRequestError(f"HTTP {status}: {reason}")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return RetryableError(reason, _retry_after(exc))
    if isinstance(exc, RuntimeError) and "event loop is closed" in str(exc).lower():
        # langchain-openai shares one async HTTP client across event loops (langchain#35783):
        # after an earlier asyncio.run(), a pooled connection of the dead loop fails once
        return RetryableError(f"stale connection from a closed event loop: {reason}")
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    if any(tag in name for name in names for tag in _RETRY_NAMES):
        return RetryableError(reason, _retry_after(exc))
    return FatalRequestError(reason)


def _status_code(exc: BaseException) -> int | None:
    for value in (
        getattr(exc, "status_code", None),
        getattr(getattr(exc, "response", None), "status_code", None),
        getattr(exc, "code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None or not hasattr(headers, "get"):
        return None
    from symkd.teachers.openai_api import retry_after_seconds  # only on an HTTP error with headers

    return retry_after_seconds(headers)


def _field_names(chat_model: BaseChatModel) -> set[str]:
    return set(getattr(type(chat_model), "model_fields", {}) or {})


def _secret_values(chat_model: BaseChatModel) -> list[str]:
    """Values of the model's SecretStr fields (API keys), so failure reasons never show them."""
    out = []
    for field in _field_names(chat_model):
        value = getattr(chat_model, field, None)
        getter = getattr(value, "get_secret_value", None)
        if callable(getter):
            secret = getter()
            if isinstance(secret, str) and secret:
                out.append(secret)
    return out


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    return text[:limit]
