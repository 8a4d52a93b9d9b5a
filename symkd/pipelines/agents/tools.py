"""Agent tools: LangChain tools that run in the parent process, never inside the sandbox.

Users hand the agent their own ``langchain_core.tools.BaseTool`` objects (or ``@tool``
functions); the sandbox's stub of each one sends the call over the worker's pipe and
:func:`sandbox_callables` runs the tool here. ``final_answer`` is built into the sandbox.
The built-in ``search`` tool retrieves from a corpus in a run DB (see :mod:`.corpus`).

    symkd agent eval ... --tools search --corpus run.db       # built-in tools by name
    symkd agent eval ... --tools my_pkg.tools:calculator      # any BaseTool, by import path
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
    from symkd.plugins import resolve

    tools: list[BaseTool] = []
    if names:
        from langchain_core.tools import BaseTool
    for name in names:
        if name == "search":
            if corpus_db is None:
                raise UserError("tool 'search' needs --corpus DB (index one with `symkd corpus index`)")
            tools.append(search_tool(corpus_db, corpus=corpus, rerank=rerank))
        elif ":" in name:
            obj = resolve(name, f"tool {name!r}")
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


def _caller(tool: BaseTool) -> Callable[..., Any]:
    fields = list(tool.args)

    def call(*args: Any, **kwargs: Any) -> str:
        if len(args) > len(fields):
            raise TypeError(f"{tool.name}() takes {len(fields)} argument(s), got {len(args)}")
        payload = {**dict(zip(fields, args)), **kwargs}
        if len(fields) == 1 and not payload:
            raise TypeError(f"{tool.name}() needs its argument {fields[0]!r}")
        return str(tool.invoke(payload))

    return call


def describe(tools: Sequence[BaseTool]) -> list[dict[str, str]]:
    """{name, signature, description} per tool, for the system prompt."""
    return [{"name": t.name, "signature": f"{t.name}({', '.join(t.args)})",
             "description": (t.description or "").strip().splitlines()[0] if t.description else ""}
            for t in tools]  # fmt: skip
