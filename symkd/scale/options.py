"""Executor options, defined once for the API and every command that takes ``--executor``.

Commands add them with ``model_options(ExecutorOptions, "executor_options")``; a bad value
is one line naming its flag. Every field but ``executor`` only means something on Ray, so
giving one without ``--executor ray`` is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, ValidationError

from symkd.errors import UserError
from symkd.options import Options, option_error


class ExecutorOptions(Options):
    """Where the teacher calls and critic batches run."""

    model_config = ConfigDict(extra="forbid")

    executor: Optional[Literal["local", "ray"]] = Field(None, description="local (one process) | ray (actors on a Ray cluster)")
    ray_address: Optional[str] = Field(None, description="Ray cluster to join (auto, ray://host:10001); default: start a local one")
    workers: Optional[int] = Field(None, ge=1, description="Ray actors per stage (default: GPUs, else CPUs, of the cluster)")
    cpus_per_worker: Optional[float] = Field(None, gt=0, description="CPUs each Ray actor reserves (default: an even share, at most 1)")
    gpus_per_worker: Optional[float] = Field(None, ge=0, description="GPUs each Ray actor reserves (default: 1 for local models when the cluster has GPUs)")
    replicas: Optional[str] = Field(None, description="comma list of base URLs serving the same model (one vllm serve per GPU); workers take turns")
    endpoint_group: Optional[str] = Field(None, description="name that identifies --replicas in cache keys (default: the sorted URLs)")
    shard_dir: Optional[str] = Field(None, description="folder for the workers' shard files (default: DB.shards next to the database)")


    @property
    def is_ray(self) -> bool:
        return self.executor == "ray"

    def replica_urls(self) -> list[str]:
        return [u.strip() for u in (self.replicas or "").split(",") if u.strip()]


def as_executor_options(options: ExecutorOptions | dict[str, Any] | None) -> ExecutorOptions:
    """Validate; Ray-only options without ``executor="ray"`` are a UserError naming the flag."""
    if isinstance(options, ExecutorOptions):
        parsed = options
    else:
        try:
            parsed = ExecutorOptions(**(options or {}))
        except ValidationError as exc:
            raise UserError(option_error(exc)) from None
    ray_only = sorted(k for k in parsed.given() if k != "executor")
    if ray_only and not parsed.is_ray:
        raise UserError(f"--{ray_only[0].replace('_', '-')} needs --executor ray")
    if parsed.endpoint_group and len(parsed.replica_urls()) < 1:
        raise UserError("--endpoint-group names a list of --replicas; give --replicas URL,URL,...")
    return parsed
