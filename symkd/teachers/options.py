"""Teacher options, defined once: the API, every CLI command that takes a teacher, and
:func:`symkd.teachers.registry.load_teacher` all use :class:`TeacherOptions`.

A field left as None means "the backend's default". A value out of range or an option no
backend knows is a one-line :class:`~symkd.errors.UserError` naming it (and, for an unknown
one, the accepted names) before anything is sent or written.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, ValidationError, field_validator

from symkd.errors import UserError
from symkd.options import Options, option_error


class TeacherOptions(Options):
    """How a teacher is reached and paced. ``cli`` in a field's extra is its short flag."""

    model_config = ConfigDict(extra="forbid")

    concurrency: Optional[int] = Field(None, ge=1, description="requests in flight (API)",
                                       json_schema_extra={"cli": "-c"})  # fmt: skip
    rpm: Optional[float] = Field(None, gt=0, description="requests-per-minute limit (API)")
    tpm: Optional[float] = Field(None, gt=0, description="tokens-per-minute limit (API)")
    timeout: Optional[float] = Field(None, gt=0, description="seconds per request try (API)")
    max_retries: Optional[int] = Field(None, ge=0, description="retries after a failed try (API)")
    base_url: Optional[str] = Field(None, description="OpenAI-compatible server URL")
    api_key_env: Optional[str] = Field(None, description="environment variable holding the API key")
    endpoint: Optional[Literal["auto", "chat", "completions"]] = Field(None, description="OpenAI endpoint: auto | chat | completions")
    batch_size: Optional[int] = Field(None, ge=1, description="requests per batch (local models)")
    device: Optional[str] = Field(None, description="auto | cpu | cuda (hf)")
    dtype: Optional[str] = Field(None, description="auto | float32 | bfloat16 | float16 (hf)")
    n_threads: Optional[int] = Field(None, ge=1, description="CPU threads (llamacpp, hf; default: this process's share of the cores)",
                                     json_schema_extra={"cli": "--threads"})  # fmt: skip
    n_ctx: Optional[int] = Field(None, ge=64, description="context length (llamacpp)")

    @field_validator("base_url")
    @classmethod
    def _usable_url(cls, value: Optional[str]) -> Optional[str]:
        from symkd.teachers.urls import check_base_url

        return value if value is None else check_base_url(value)



def fields() -> list[str]:
    return list(TeacherOptions.model_fields)


def as_options(options: TeacherOptions | dict[str, Any] | None, *, extra_ok: frozenset[str] = frozenset()) -> TeacherOptions:
    """Validate ``options`` (a dict or model); names in ``extra_ok`` pass through unchecked."""
    if isinstance(options, TeacherOptions):
        return options
    data = {k: v for k, v in (options or {}).items() if k not in extra_ok}
    unknown = sorted(k for k in data if k not in TeacherOptions.model_fields)
    if unknown:
        raise UserError(f"unknown teacher option {unknown[0]!r}; accepted: {', '.join(fields())}")
    try:
        return TeacherOptions(**data)
    except ValidationError as exc:
        raise UserError(one_line(exc)) from None


def one_line(exc: ValidationError, flag_prefix: str = "") -> str:
    """``--rpm: must be greater than 0 (got -5)`` from pydantic's first error (the field name alone without a prefix)."""
    return option_error(exc, lambda name: flag_prefix + name.replace("_", "-") if flag_prefix else name)
