"""The Ray executor: a stage's teacher requests and critic batches on Ray actors.

One pool of actors lives at a time (keyed by what it runs): the stages of a run that share
a teacher reuse its actors (a local model loads once per actor for the whole run), and a
small cluster never deadlocks with a teacher pool holding the CPUs a critic pool waits
for. Resources per actor: local models get a GPU each when the cluster has GPUs, else an
even share of the CPUs; API teachers keep their concurrency per worker and split the
rpm/tpm limits across workers, so N workers together stay within the account's limits.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from symkd.errors import UserError
from symkd.scale import replicas as rep
from symkd.scale import shards
from symkd.scale.base import RAY_HINT, Executor, Factory
from symkd.scale.options import ExecutorOptions
from symkd.scale.pool import ActorPool, AllWorkersLost


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs ray: {RAY_HINT}") from None
    return ray


class RayExecutor(Executor):
    """Joins (``address``) or starts a Ray instance; starts actors only when work is left."""

    name = "ray"

    def __init__(self, *, address: str | None = None, workers: int | None = None, cpus_per_worker: float | None = None,
                 gpus_per_worker: float | None = None, replicas: Sequence[str] = (), endpoint_group: str | None = None,
                 shard_dir: str | Path | None = None, chunk_size: int | None = None,
                 init_options: dict[str, Any] | None = None, fault_after: int | None = None):  # fmt: skip
        self.ray = _ray()
        self.address, self.init_options = address, dict(init_options or {})
        self.started = False  # Ray starts on first use: bad arguments and cached reruns never wait for it
        self.workers, self.cpus, self.gpus = workers, cpus_per_worker, gpus_per_worker
        self.replicas, self.endpoint_group = list(replicas), endpoint_group
        self.shard_dir = Path(shard_dir) if shard_dir else None
        self.chunk_size = chunk_size
        self.fault_after = fault_after  # tests: worker 0 of the first teacher pool dies after N answers
        self.pool: ActorPool | None = None
        self.pool_key: str | None = None
        self.stores: dict[Path, Path] = {}  # shard folder -> database, merged on close
        self._lost = 0
        self.recovered = 0  # answers taken from shard files instead of being sent again

    @classmethod
    def from_options(cls, options: ExecutorOptions) -> "RayExecutor":
        return cls(address=options.ray_address, workers=options.workers, cpus_per_worker=options.cpus_per_worker,
                   gpus_per_worker=options.gpus_per_worker, replicas=options.replica_urls(),
                   endpoint_group=options.endpoint_group, shard_dir=options.shard_dir)  # fmt: skip

    # -- sizing -------------------------------------------------------------------------
    def connect(self) -> None:
        """Join ``address`` (or start a local Ray) unless this process is connected already."""
        if not self.ray.is_initialized():
            self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **self.init_options)
            self.started = True

    def _cluster(self, name: str) -> float:
        self.connect()
        return float(self.ray.cluster_resources().get(name, 0.0))

    def worker_count(self, heavy: bool) -> int:
        """Given, else one per replica, per GPU (local models), or per CPU."""
        if self.workers:
            return self.workers
        if self.replicas:
            return len(self.replicas)
        gpus = int(self._cluster("GPU")) if heavy else 0
        return max(1, gpus or int(self._cluster("CPU")))

    def resources(self, workers: int, heavy: bool) -> dict[str, float]:
        """num_cpus / num_gpus per actor: every actor of a pool fits the cluster at once."""
        cpus = self.cpus if self.cpus is not None else max(0.01, round(min(1.0, self._cluster("CPU") / workers), 2))
        gpus = self.gpus
        if gpus is None:
            total = self._cluster("GPU")
            gpus = round(min(1.0, total / workers), 2) if heavy and total else 0.0
        return {"num_cpus": cpus, "num_gpus": gpus}

    # -- pools --------------------------------------------------------------------------
    def _pool(self, key: str, build: Callable[[], ActorPool]) -> ActorPool:
        if self.pool is not None and self.pool_key == key and self.pool.alive:
            return self.pool
        self._drop_pool()
        self.pool, self.pool_key = build(), key
        return self.pool

    @property
    def workers_lost(self) -> int:
        """Actors that died under work since this executor started (their work moved on)."""
        return self._lost + (self.pool.lost if self.pool else 0)

    def _drop_pool(self) -> None:
        if self.pool is not None:
            self._lost += self.pool.lost
            self.pool.kill()
        self.pool = self.pool_key = None

    def teacher(self, spec: Any, options: dict[str, Any], store: Any) -> Any:
        from symkd.scale.sharded import ShardedTeacher
        from symkd.teachers.registry import teacher_spec

        spec = teacher_spec(spec, **options)  # a TeacherSpec (from the session) is not parsed again
        identity, describe = self._identity(spec)
        db = Path(getattr(store, "path", store)).resolve()  # a Store or the database's path
        folder = Path(self.shard_dir or shards.default_dir(db)).resolve()  # workers do not share our cwd
        self.stores[folder] = db
        sharded = ShardedTeacher(self, spec, identity, describe, folder)
        if spec.backend == "langchain":
            sharded.worker_spec, sharded.imports = self._langchain(spec)
        return sharded

    def _identity(self, spec: Any) -> tuple[tuple[str, str], dict[str, Any]]:
        """The local run's cache identity (or the replica group's) and what the run row records."""
        from symkd.teachers.embedded import model_id

        if spec.teacher is not None:
            raise UserError("--executor ray needs a teacher spec (a string such as openai:MODEL) or a LangChain "
                            "chat model, not a symkd Teacher object")  # fmt: skip
        rep.check_replicas(spec.backend, self.replicas, spec.options)
        identity = spec.identity  # langchain: from the chat model's parameters (built here once), as a local run
        if identity is None:
            raise UserError(f"--executor ray: teacher {spec.text!r} has no cache identity before it is built; "
                            "run it locally")
        model = identity[1] if spec.backend == "langchain" else model_id(spec.model)  # as a local run records it
        if self.replicas:
            identity = (identity[0], rep.group_model(model_id(spec.model), self.replicas, self.endpoint_group))
        record = {"backend": identity[0], "model": model,
                  "executor": "ray", "workers": self.workers or "auto"}  # fmt: skip
        if self.replicas:
            record["replicas"] = rep.recorded(self.replicas)
            record["endpoint_group"] = self.endpoint_group
        return identity, record

    def _langchain(self, spec: Any) -> tuple[str | bytes, list[tuple[str, str]]]:
        """What the workers load a LangChain teacher from: the spec text (each worker imports and
        builds the model itself) or a chat model object, pickled; and where its code was found."""
        from symkd.teachers.langchain_chat import import_root

        if spec.instance is None:
            module, payload = spec.model.partition(":")[0].strip(), spec.text
        else:
            module = type(spec.instance).__module__
            try:
                payload = self.ray.cloudpickle.dumps(spec)
            except Exception as exc:  # noqa: BLE001 - whatever the model holds (a lock, a generator, a client)
                why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                raise UserError(f"--executor ray: the chat model object {type(spec.instance).__name__} does not "
                                f"pickle ({why}); give it as langchain:module:factory so each worker builds "
                                "its own, or run it locally") from None  # fmt: skip
        root = import_root(module)
        return payload, [(module, root)] if root else []

    def teacher_pool(self, teacher: Any) -> ActorPool:
        """The actors answering ``teacher`` (started, and preflighted, on first use)."""
        def build() -> ActorPool:
            from symkd.scale.worker import TeacherWorker

            heavy = teacher.parsed.heavy
            workers = self.worker_count(heavy)
            resources = self.resources(workers, heavy)
            args = [(teacher.worker_spec, self.worker_options(teacher.options, i, workers, resources["num_cpus"]),
                     str(teacher.shard_dir / f"w{i}-{uuid.uuid4().hex[:8]}.db"),
                     self.fault_after if i == 0 else None, teacher.imports) for i in range(workers)]  # fmt: skip
            self.fault_after = None
            pool = ActorPool(self.ray, TeacherWorker, args, resources)
            try:
                pool.call_all("preflight")
            except BaseException:
                pool.kill()  # a teacher that cannot start leaves no actor holding resources
                raise
            return pool

        return self._pool(teacher.pool_key, build)

    def worker_options(self, options: dict[str, Any], index: int, workers: int, cpus: float) -> dict[str, Any]:
        """One worker's teacher options: its replica, its share of the rate limits, its threads."""
        out = dict(options)
        for limit in ("rpm", "tpm"):
            if out.get(limit):
                out[limit] = out[limit] / workers
        if self.replicas:
            out["base_url"] = self.replicas[index % len(self.replicas)]
        if "n_threads" not in out and cpus >= 1:
            out["n_threads"] = int(cpus)  # llamacpp would otherwise take every CPU of the node
        return out

    def map_batches(self, factory: Factory, batches: Sequence[Sequence[Any]], *, key: str, heavy: bool = True) -> Iterator[list[Any]]:
        from symkd.scale.worker import BatchWorker

        if not batches:
            return iter(())
        workers = min(self.worker_count(heavy), len(batches))

        def build() -> ActorPool:
            return ActorPool(self.ray, BatchWorker, [(factory,)] * workers, self.resources(workers, heavy))

        pool = self._pool(f"batches:{key}:{workers}", build)
        return _one_line(pool.map_ordered("run", list(batches)), key)

    def close(self) -> None:
        """End the actors, fold what the shard files hold into each database, stop a Ray we started."""
        try:
            self._drop_pool()
            for folder, db in self.stores.items():
                if db.exists() and folder.is_dir():
                    from symkd.store.db import Store

                    with Store(db) as store:
                        shards.merge(store, folder)
        finally:
            if self.started and self.ray.is_initialized():
                self.ray.shutdown()


def _one_line(results: Iterator[list[Any]], key: str) -> Iterator[list[Any]]:
    try:
        yield from results
    except AllWorkersLost as exc:
        raise UserError(f"{key}: {exc}") from None
