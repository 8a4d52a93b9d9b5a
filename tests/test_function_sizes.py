"""Acceptance rule: no function in ``symkd/`` over 12 parameters or over 80 lines.

Every function and method (nested ones too) is read with ``ast``. Parameters: all declared ones,
``self``/``cls``, ``*args`` and ``**kwargs`` included. Lines: from the ``def`` line to the last line
of the body (decorators not counted), docstring and comments included.

``ALLOWED`` lists today's offenders, each with why it is still long; it may only shrink. The test
also fails when a listed function is gone or now complies: then delete its line. Nothing under
``symkd/students/`` may be listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "symkd"
MAX_PARAMS = 12
MAX_LINES = 80

#: "path/from/repo/root.py::Qualified.name": why it is not split yet (a CLI command takes one
#: parameter per option; the others relay the CLI's options to the pipeline)
ALLOWED: dict[str, str] = {}


def _functions(tree: ast.AST, prefix: str = ""):  # noqa: ANN202
    """(qualified name, node) of every function and method under ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    return len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def measure() -> dict[str, tuple[int, int]]:
    """``path::qualname`` -> (parameters, lines) of every function in the package."""
    sizes: dict[str, tuple[int, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(ROOT).as_posix()
        for name, node in _functions(tree):
            sizes[f"{rel}::{name}"] = (_parameters(node), node.end_lineno - node.lineno + 1)
    return sizes


def offenders() -> dict[str, str]:
    """``path::qualname`` -> what is over the limit, for every function over a limit."""
    found = {}
    for key, (params, lines) in measure().items():
        over = ([f"{params} parameters > {MAX_PARAMS}"] if params > MAX_PARAMS else []) + (
            [f"{lines} lines > {MAX_LINES}"] if lines > MAX_LINES else []
        )
        if over:
            found[key] = ", ".join(over)
    return found


def test_no_function_over_the_limits_but_the_listed_ones() -> None:
    new = {k: v for k, v in offenders().items() if k not in ALLOWED}
    assert not new, "functions over the limits (split them or group parameters into a small object):\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(new.items())
    )


def test_the_allow_list_only_holds_current_offenders() -> None:
    sizes, found = measure(), offenders()
    gone = sorted(k for k in ALLOWED if k not in sizes)
    complies = sorted(k for k in ALLOWED if k in sizes and k not in found)
    assert not gone and not complies, (
        "delete these lines from ALLOWED in tests/test_function_sizes.py:\n"
        + "".join(f"  {k}: no such function any more\n" for k in gone)
        + "".join(f"  {k}: now within the limits {sizes[k]} (parameters, lines)\n" for k in complies)
    )


def test_students_have_no_exemptions() -> None:
    assert not [k for k in ALLOWED if k.startswith("symkd/students/")]
