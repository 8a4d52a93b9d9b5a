"""Pipelines: each folder here owns its steps, parsing, domain critics, tables, evaluation and
CLI commands, and depends only on the core (and on another pipeline only through that
pipeline's public module). :data:`REGISTRY` maps a pipeline's name to its ``register(app)``
that adds its commands; pipelines of other packages come from the ``symkd.pipelines``
entry-point group.
"""

from __future__ import annotations

from symkd.plugins import Registry

REGISTRY = Registry(
    "symkd.pipelines",
    "pipeline",
    {
        "commonsense": "symkd.pipelines.commonsense.cli:register",
        "agents": "symkd.pipelines.agents.cli:register",
        "strategies": "symkd.pipelines.strategies.cli:register",
    },
)
