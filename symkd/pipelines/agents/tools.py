"""Agent tools: LangChain tools that run in the parent process, never inside the sandbox.

Users hand the agent their own ``langchain_core.tools.BaseTool`` objects (or ``@tool``
functions); the sandbox's stub of each one sends the call over the worker's pipe and
:func:`sandbox_callables` runs the tool here. ``final_answer`` is built into the sandbox.
The built-in ``search`` tool retrieves from a corpus in a run DB (see :mod:`.corpus`).

    symkd agent eval ... --tools search --corpus run.db       # built-in tools by name
    symkd agent eval ... --tools my_pkg.tools:calculator      # any BaseTool, by import path

As for ``--teacher langchain:mod:attr``, a ``mod`` that is not installed is looked for in the
current directory. A tool that only has an async implementation (``@tool async def``, a
``StructuredTool`` with only a ``coroutine``, a BaseTool whose ``_run`` is not implemented) is
awaited here, in the parent, on an event loop of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from symkd.errors import UserError

if TYPE_CHECKING:  # langchain-core is the optional extra [langchain]: imported only when tools are used
    from langchain_core.tools import BaseTool

BUILTIN = ("search",)


def search_tool(db: str | Path, *, corpus: str | None = None, k: int = 3, rerank: bool = False) -> BaseTool:
    """The built-in ``search(query)``: the ``k`` best passages of the DB's corpus, as text."""
    from symkd.pipelines.agents.corpus import Corpus

    index = Corpus(db, corpus=corpus, rerank=rerank)

    def search(query: str) -> str:
        hits = index.search(str(query), k=k)
        if not hits:
            return "no results"
        return "\n".join(f"[{i}] {(h['title'] + ': ') if h['title'] else ''}{h['text']}" for i, h in enumerate(hits, 1))

    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(
        search,
        name="search",
        description=f"returns the {k} passages of the reference corpus that best match the query, as text",
    )


def load_tools(names: Sequence[str], *, corpus_db: Path | None = None, corpus: str | None = None,
               rerank: bool = False) -> list[BaseTool]:  # fmt: skip
    """Tools by name: built-ins (``search``) or ``module:attr`` paths to a BaseTool / factory."""
    tools: list[BaseTool] = []
    if names:
        from langchain_core.tools import BaseTool
    for name in names:
        if name == "search":
            if corpus_db is None:
                raise UserError("tool 'search' needs --corpus DB (index one with `symkd agent index-corpus`)")
            tools.append(search_tool(corpus_db, corpus=corpus, rerank=rerank))
        elif ":" in name:
            obj = _import_target(name)
            obj = obj() if callable(obj) and not isinstance(obj, BaseTool) else obj
            if not isinstance(obj, BaseTool):
                raise UserError(f"tool {name!r} is not a langchain_core BaseTool")
            tools.append(obj)
        else:
            raise UserError(f"unknown tool {name!r}; built-in: {', '.join(BUILTIN)}, or give module:attr of a BaseTool")
    check_names(tools)
    return tools


def check_names(tools: Sequence[BaseTool]) -> None:
    seen: set[str] = set()
    for t in tools:
        if not t.name.isidentifier() or t.name in ("final_answer", "print"):
            raise UserError(f"tool name {t.name!r} must be a Python identifier other than final_answer/print")
        if t.name in seen:
            raise UserError(f"two tools are named {t.name!r}")
        seen.add(t.name)


def sandbox_callables(tools: Sequence[BaseTool]) -> dict[str, Callable[..., Any]]:
    """name -> function the sandbox calls in the parent: positional args map to the tool's fields."""
    return {t.name: _caller(t) for t in tools}


def _import_target(name: str) -> Any:
    """``module:attr.sub`` -> the object; the module may sit in the current directory."""
    from symkd.teachers.langchain_chat import import_nearby

    module_name, _, attr = name.partition(":")
    try:
        obj: Any = import_nearby(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"tool {name!r}: cannot import {module_name}: {exc}") from None
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise UserError(f"tool {name!r}: {module_name} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def _caller(tool: BaseTool) -> Callable[..., Any]:
    fields = list(tool.args)

    def call(*args: Any, **kwargs: Any) -> str:
        if len(args) > len(fields):
            raise TypeError(f"{tool.name}() takes {len(fields)} argument(s), got {len(args)}")
        payload = {**dict(zip(fields, args)), **kwargs}
        if len(fields) == 1 and not payload:
            raise TypeError(f"{tool.name}() needs its argument {fields[0]!r}")
        return str(_invoke(tool, payload))

    return call


def _invoke(tool: BaseTool, payload: dict[str, Any]) -> Any:
    """The tool's result: called directly, or awaited when it only has an async implementation."""
    from symkd.aio import run_sync

    if async_only(tool):
        return run_sync(tool.ainvoke(payload))
    try:
        return tool.invoke(payload)
    except NotImplementedError:
        if not _has_own_arun(tool):
            raise
        return run_sync(tool.ainvoke(payload))  # a BaseTool whose _run says "async only"


def async_only(tool: BaseTool) -> bool:
    """Whether the tool has an async implementation and no sync one (``@tool async def``)."""
    return getattr(tool, "coroutine", None) is not None and getattr(tool, "func", None) is None


def _has_own_arun(tool: BaseTool) -> bool:
    from langchain_core.tools import BaseTool

    return type(tool)._arun is not BaseTool._arun


def describe(tools: Sequence[BaseTool]) -> list[dict[str, str]]:
    """{name, signature, description} per tool, for the system prompt."""
    return [{"name": t.name, "signature": f"{t.name}({', '.join(t.args)})",
             "description": (t.description or "").strip().splitlines()[0] if t.description else ""}
            for t in tools]  # fmt: skip
