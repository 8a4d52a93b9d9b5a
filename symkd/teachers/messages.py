"""Request and response types shared by every teacher backend.

A :class:`Request` is what a pipeline asks for; a :class:`Response` is what comes back.
Both are plain pydantic models so they serialise to the SQLite store as JSON as they are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from symkd.safetext import valid_unicode


class GenerationParams(BaseModel):
    """Sampling parameters. Every field set to a non-default value takes part in the cache key
    (defaults are left out, so adding a new optional field later keeps old caches valid)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1, ge=1, le=128)
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(64, ge=1, le=32768)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    #: constrained decoding (I2D2): words/phrases the output must contain / must not contain.
    #: Local backends constrain the search; API backends are post-filtered by the pipeline.
    require_words: tuple[str, ...] = ()
    forbid_words: tuple[str, ...] = ()


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Request(BaseModel):
    """One generation request: chat ``messages`` or a raw completion ``prompt``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="the caller's id for this item (unique within a run)")
    messages: list[Message] | None = None
    prompt: str | None = None
    params: GenerationParams = GenerationParams()
    sample_index: int = Field(0, ge=0, description="asks again for the same input as a new sample")
    template_id: str | None = None
    template_version: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> "Request":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        return self

    @property
    def kind(self) -> Literal["chat", "completion"]:
        return "chat" if self.messages is not None else "completion"

    def input_payload(self) -> Any:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return self.prompt

    def cache_key(self, backend: str, model: str) -> str:
        """sha256 of canonical JSON of everything that decides the answer."""
        payload = {
            "backend": backend,
            "model": model,
            "kind": self.kind,
            "input": self.input_payload(),
            "params": self.params.model_dump(mode="json", exclude_defaults=True),
            "sample_index": self.sample_index,
        }
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class Completion(BaseModel):
    """One sampled continuation. A model may answer a lone surrogate (valid JSON, but no UTF-8
    file or SQLite text can hold it): it becomes U+FFFD here, where every backend's answer enters."""

    text: str
    finish_reason: str | None = None
    token_logprobs: list[float] | None = None

    @field_validator("text", "finish_reason")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        return value if value is None else valid_unicode(value)

    @property
    def logprob_sum(self) -> float | None:
        return None if self.token_logprobs is None else float(sum(self.token_logprobs))


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Response(BaseModel):
    """The teacher's answer to one request (``error`` set when it finally failed)."""

    completions: list[Completion] = []
    usage: Usage = Usage()
    error: str | None = None
    attempts: int = 1
    latency_s: float = 0.0

    @field_validator("error")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        return value if value is None else valid_unicode(value)

    @property
    def ok(self) -> bool:
        return self.error is None


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
