"""Reading a batch of requests from JSONL.

One JSON object per line, one of::

    {"id": "q1", "messages": [{"role": "user", "content": "..."}]}
    {"id": "q2", "prompt": "raw completion prompt"}
    {"id": "q3", "template": "quickstart/explain@1", "variables": {"concept": "gravity"}}

Optional per line: ``"params"`` (n, temperature, top_p, max_tokens, stop, seed, logprobs)
and ``"sample_index"``. Parameters stack: template defaults < caller's defaults < the line's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from symkd.errors import UserError
from symkd.jsonio import read_jsonl
from symkd.prompts import get_template
from symkd.teachers.messages import GenerationParams, Request

_ALLOWED = {"id", "messages", "prompt", "template", "variables", "params", "sample_index"}


def read_requests(path: str | Path, **defaults: Any) -> list[Request]:
    """Parse a requests file; ``defaults`` are generation params (None = not set)."""
    defaults = {k: v for k, v in defaults.items() if v is not None}
    out: list[Request] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        unknown = sorted(set(obj) - _ALLOWED)
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}")
        if "id" not in obj:
            raise UserError(f"{where}: field id: missing")
        item_id = str(obj["id"])
        if item_id in seen:
            raise UserError(f"{where}: field id: {item_id!r} already used on line {seen[item_id]}")
        seen[item_id] = lineno
        line_params = obj.get("params") or {}
        if not isinstance(line_params, dict):
            raise UserError(f"{where}: field params: expected an object")
        try:
            params = GenerationParams(**{**defaults, **line_params})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise UserError(f"{where}: field params.{field}: {err['msg']}") from None
        try:
            if "template" in obj:
                variables = obj.get("variables") or {}
                if not isinstance(variables, dict):
                    raise UserError(f"{where}: field variables: expected an object")
                tpl = get_template(str(obj["template"]))
                try:
                    req = tpl.request(
                        item_id, variables, sample_index=obj.get("sample_index", 0), **{**defaults, **line_params}
                    )
                except UserError as exc:
                    raise UserError(f"{where}: {exc}") from None
            else:  # params: the line's, validated above
                body = {k: obj[k] for k in ("messages", "prompt") if k in obj}
                req = Request(id=item_id, params=params, sample_index=obj.get("sample_index", 0), **body)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "line"
            msg = err["msg"].removeprefix("Value error, ")
            raise UserError(f"{where}: field {field}: {msg}") from None
        out.append(req)
    if not out:
        raise UserError(f"{path}: no requests (the file is empty)")
    return out
