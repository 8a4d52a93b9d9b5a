"""One registry mechanism for everything symkd looks up by name: teachers, critics, losses, pipelines.

A :class:`Registry` maps names to ``"module:attribute"`` targets. Built-ins are given where the
registry is made; everything else comes from the Python entry-point group of the same name
(``symkd.teachers``, ``symkd.critics``, ``symkd.losses``, ``symkd.pipelines``), so a user's
package extends symkd without editing it::

    # the user's pyproject.toml
    [project.entry-points."symkd.critics"]
    length = "my_pkg.critics:LengthCritic"

Targets are imported only when used, so listing names never imports torch. The pipelines'
own critics are registered through the same entry points in symkd's pyproject, which is how
the core finds them without importing a pipeline.
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from typing import Any, Callable, Iterable

from symkd.errors import UserError


class Registry:
    """Names -> lazily imported objects, from built-ins plus an entry-point group."""

    def __init__(self, group: str, what: str, builtins: dict[str, str] | None = None):
        self.group = group
        self.what = what
        self._builtins = dict(builtins or {})
        self._extra: dict[str, str] = {}
        self._entry_points: dict[str, str] | None = None

    def register(self, name: str, target: str | Any) -> None:
        """Add (or replace) an entry at run time: a ``"module:attr"`` string or the object itself."""
        self._extra[name] = target

    def _from_entry_points(self) -> dict[str, str]:
        if self._entry_points is None:
            self._entry_points = dict(symkd_entry_points().get(self.group, {}))
        return self._entry_points

    def targets(self) -> dict[str, Any]:
        """Every name -> target; built-ins first, then entry points, then run-time additions."""
        return {**self._builtins, **{k: v for k, v in self._from_entry_points().items() if k not in self._builtins},
                **self._extra}  # fmt: skip

    def names(self) -> list[str]:
        return list(self.targets())

    def __contains__(self, name: object) -> bool:
        return name in self.targets()

    def target(self, name: str) -> Any:
        targets = self.targets()
        if name not in targets:
            raise UserError(f"unknown {self.what} {name!r}; known: {', '.join(targets) or '(none)'}")
        return targets[name]

    def load(self, name: str) -> Any:
        """Import and return the object registered as ``name``."""
        return resolve(self.target(name), f"{self.what} {name!r}")


@functools.lru_cache(maxsize=1)
def symkd_entry_points() -> dict[str, dict[str, str]]:
    """Every ``symkd.*`` entry point of the installed packages: group -> name -> target.

    One scan per process: each ``metadata.entry_points(group=...)`` call reads every installed
    distribution's metadata again (~8 ms with 225 packages), and a command may consult several
    registries. The first distribution to name an entry wins, as with one group's own scan."""
    every = metadata.entry_points()  # one scan; .groups and .select() read what it holds
    found: dict[str, dict[str, str]] = {}
    for group in sorted(g for g in every.groups if g.startswith("symkd.")):
        for ep in sorted(every.select(group=group), key=lambda e: e.name):
            found.setdefault(group, {}).setdefault(ep.name, ep.value)
    return found


def resolve(target: str | Any, label: str) -> Any:
    """``"pkg.module:attr.sub"`` -> the object; an object is returned as it is."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"{label}: module {module_name!r} is not installed") from None
        raise
    for part in filter(None, attr.split(".")):
        if not hasattr(obj, part):
            raise UserError(f"{label}: {module_name!r} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


def entry_point_names(groups: Iterable[str]) -> dict[str, list[str]]:
    """Installed entry-point names per group (for ``symkd plugins``)."""
    return {group: sorted(symkd_entry_points().get(group, {})) for group in groups}


GROUPS = ("symkd.teachers", "symkd.critics", "symkd.losses", "symkd.pipelines", "symkd.context", "symkd.relations",
          "symkd.exports", "symkd.data", "symkd.metrics", "symkd.cards")

#: prompt context providers: ``name -> factory(arg) -> callable(question) -> str``.
#: A pipeline that retrieves guidance (strategies) registers one here through the
#: ``symkd.context`` entry-point group; the user names it (``--context strategies:DB``) and
#: :func:`context_from` makes it, so no pipeline looks another up by a name written in its code.
CONTEXT_PROVIDERS = Registry("symkd.context", "context provider")


def context_from(spec: str | None) -> Callable[[str], str] | None:
    """The provider a ``NAME:ARG`` spec names, made with ARG (``strategies:lib.db``); None for None."""
    if spec is None:
        return None
    name, sep, arg = str(spec).partition(":")
    if not sep or not name or not arg:
        raise UserError(f"--context: expected NAME:ARG (e.g. strategies:lib.db), got {spec!r}")
    if name not in CONTEXT_PROVIDERS.names():
        known = ", ".join(CONTEXT_PROVIDERS.names()) or "none installed"
        raise UserError(f"--context: unknown context provider {name!r} (known: {known})")
    return CONTEXT_PROVIDERS.load(name)(arg)
