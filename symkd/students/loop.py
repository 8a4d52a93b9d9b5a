"""The training loop's pieces: a run's budget (:class:`Plan`), its batch stream (:class:`BatchOrder`),
one step's forwards and backwards (:class:`Passes`), and the :class:`Run` that steps, evaluates and
checkpoints (:func:`symkd.students.train.train` orchestrates them, as TRL / transformers' Trainer do).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symkd.memory import release_if_short, resident_mb
from symkd.students import checkpoints
from symkd.students.batching import collate, epoch_batches, target_count
from symkd.students.config import TrainConfig
from symkd.students.distributed import Processes, shard
from symkd.students.modeling import set_attention, training_attention
from symkd.students.prepare import Prepared, step_count, step_divisor
from symkd.students.steps import eval_loss, loss_sums
from symkd.threads import apply_torch_threads

__all__ = ["BatchOrder", "Optimization", "Passes", "Plan", "Run"]


@dataclass(frozen=True)
class Plan:
    """The run's budget: ``per_epoch`` global micro-batches of ``global_micro`` rows, ``total_steps``
    optimizer steps, a held-out loss every ``eval_every`` and a checkpoint every ``save_every`` steps."""

    global_micro: int
    per_epoch: int
    total_steps: int
    eval_every: int
    save_every: int

    @classmethod
    def of(cls, config: TrainConfig, prepared: Prepared, world: int) -> Plan:
        global_micro = config.batch_size * world
        per_epoch = math.ceil(len(prepared.train) / global_micro)
        total_steps = step_count(config, prepared, global_micro, per_epoch)
        every = max(1, total_steps // 10)
        return cls(global_micro, per_epoch, total_steps, config.eval_every or every, config.save_every or every)


@dataclass
class Optimization:
    """What updates the weights: the trainable ``params``, the optimizer, its LR schedule and the
    KD loss (None without white-box KD; some, such as TAID, keep state across steps)."""

    params: list[Any]
    optimizer: Any
    scheduler: Any
    kd: Any = None


class BatchOrder:
    """Global micro-batch ``g`` of the run: epoch ``g // per_epoch``, that epoch's batch ``g % per_epoch``."""

    def __init__(self, lengths: list[int], size: int, seed: int, per_epoch: int) -> None:
        self.lengths, self.size, self.seed, self.per_epoch = lengths, size, seed, per_epoch
        self.epoch, self.batches = -1, []

    def batch(self, g: int) -> list[int]:
        epoch, index = divmod(g, self.per_epoch)
        if epoch != self.epoch:
            self.batches, self.epoch = epoch_batches(self.lengths, self.size, self.seed, epoch), epoch
        return self.batches[index]


#: micro-batch widths on a CPU round up to this. Measured (bench/train_memory.py --pad-multiples 1,64,
#: 160 agent trajectories, 20 steps, no heap trims, BENCHMARKS.md): 7 % less RSS between steps and a
#: 13 % lower peak at the same tokens/s (569 vs 562, real tokens only); fewer distinct shapes mean
#: fewer cached kernels and heap high waters, and a long run's growth after trims follows the
#: number of distinct widths (see symkd.memory)
CPU_PAD_MULTIPLE = 64


class Passes:
    """One optimizer step's forwards and backwards, and the held-out loss, in the run's layout."""

    def __init__(self, config: TrainConfig, procs: Processes, model: Any, teacher: Any, kd: Any, prepared: Prepared,
                 pad_id: int, bf16: bool, sliced: bool) -> None:  # fmt: skip
        import torch

        self.config, self.procs, self.model, self.teacher, self.kd = config, procs, model, teacher, kd
        self.data, self.pad_id, self.sliced = prepared, pad_id, sliced
        self.targets = [target_count(t) for t in prepared.train]
        self.multiple = config.pad_multiple or (8 if procs.device.type == "cuda" else CPU_PAD_MULTIPLE)
        self.base = procs.unwrap(model)
        self.autocast = torch.autocast(procs.device.type, dtype=torch.bfloat16, enabled=bf16)
        self.redi_alpha = config.redi_alpha if config.loss == "redi" else None

    def batch(self, items: list[Any], masked: bool = False) -> dict[str, Any]:
        pack = max(len(t.input_ids) for t in items) if self.config.packing else None  # rows never wider than padded ones
        batch = collate(items, self.pad_id, multiple_of=self.multiple, masked=masked, pack=pack)
        rows, width = batch["input_ids"].shape
        set_attention(self.base, training_attention(self.procs.device, self.base.config, rows, width))
        return {k: v.to(self.procs.device) for k, v in batch.items()}

    def step(self, micro: list[list[int]], state: dict[str, Any]) -> dict[str, Any]:
        """Accumulate the step's gradients; return its logged losses (reduced over ranks)."""
        import torch

        from symkd.students.losses import mix

        train, cfg, procs = self.data.train, self.config, self.procs
        flat = [i for b in micro for i in b]
        n_step = step_divisor(cfg.loss, self.targets, flat)
        scale = procs.world / max(n_step, 1)  # DDP averages over ranks: undo it, then divide by the step's count
        sums = torch.zeros(3, device=procs.device)
        for m, indices in enumerate(micro):
            rows, masked = shard(indices, procs.rank, procs.world)
            batch = self.batch([train[i] for i in rows], masked)
            with procs.no_sync(self.model, sync=m == len(micro) - 1):
                with self.autocast:
                    objective, kd_sum, logged = loss_sums(self.model, self.teacher, self.kd, batch, self.sliced, self.redi_alpha)
                    loss = objective if kd_sum is None else mix(objective, kd_sum, cfg.kd_weight)
                (loss * scale).backward()
            sums += _logged(objective, kd_sum, logged, self.redi_alpha is not None)
            state["tokens"] += sum(len(train[i].input_ids) for i in indices)
        total, second, third = procs.sum(sums)  # the step's one sync
        if self.redi_alpha is not None:
            negatives = sum(1 for i in flat if train[i].negative and self.targets[i] > 0)
            positives = n_step - negatives
            return {"loss": total / max(n_step, 1), "pos_nll": second / positives if positives else None,
                    "neg_nll": third / negatives if negatives else None}  # fmt: skip
        ce, kd = total / max(n_step, 1), second / max(n_step, 1)
        if self.kd is None:
            return {"loss": ce}
        return {"loss": (1 - cfg.kd_weight) * ce + cfg.kd_weight * kd, "ce": ce, "kd": kd}

    def held_out_loss(self) -> float:
        return eval_loss(self.model, self.data.held, 2 * self.config.batch_size, self.procs, self.autocast, self.sliced,
                         self.batch)  # fmt: skip


def _logged(objective: Any, kd_sum: Any, logged: Any, redi: bool) -> Any:
    """A micro-batch's sums to log: [objective, positives' NLL, negatives' NLL] (REDI) or [CE, KD, 0]."""
    import torch

    if redi:
        return torch.cat([objective.detach().float().reshape(1), logged.float()])
    zero = objective.detach().float().new_zeros(())
    return torch.stack([objective.detach().float(), kd_sum.detach().float() if kd_sum is not None else zero, zero])


def _host_memory(procs: Processes, trimmed: bool) -> dict[str, Any]:
    """On a CPU: the process's resident MB after the step and whether the heap was trimmed (a long
    run's speed and memory can be read from its history); nothing on a GPU."""
    if procs.device.type != "cpu":
        return {}
    rss = resident_mb()
    return {"rss_mb": rss, "trimmed": trimmed} if rss is not None else {"trimmed": trimmed}


@dataclass
class Run:
    """A prepared training run: :meth:`step` until :attr:`done`, with :meth:`evaluate` and
    :meth:`checkpoint` after each step. ``state`` is what checkpoints keep: ``step``, ``history``,
    ``evals``, ``tokens``, ``seconds`` (stepping), ``overhead_seconds`` (evaluating, saving), ``fingerprint``."""

    config: TrainConfig
    procs: Processes
    out: Path
    model: Any  # wrapped for DDP/FSDP where several processes train
    tokenizer: Any
    opt: Optimization
    plan: Plan
    prepared: Prepared
    passes: Passes
    order: BatchOrder
    state: dict[str, Any]
    bf16: bool

    @property
    def done(self) -> bool:
        return self.state["step"] >= self.plan.total_steps

    def step(self) -> dict[str, Any]:
        """One optimizer step; its row (step, losses, lr) joins ``state["history"]`` and is returned."""
        cfg, procs, opt, state = self.config, self.procs, self.opt, self.state
        started = time.perf_counter()
        if procs.device.type == "cpu" and procs.world == 1:
            apply_torch_threads()  # this process's share of the cores, as other symkd processes come and go
        micro = [self.order.batch(state["step"] * cfg.grad_accum + m) for m in range(cfg.grad_accum)]
        tokens_before = state["tokens"]
        row = self.passes.step(micro, state)
        procs.clip_grad_norm(self.model, opt.params, cfg.max_grad_norm)
        opt.optimizer.step()
        opt.scheduler.step()
        opt.optimizer.zero_grad(set_to_none=True)
        trimmed = procs.device.type == "cpu" and release_if_short()  # the heap keeps every step's high water (symkd.memory)
        state["step"] += 1
        if opt.kd is not None:
            opt.kd.after_step(row["kd"], state["step"])  # the same reduced value on every rank
        seconds = time.perf_counter() - started
        row = {"step": state["step"], **{k: v if v is None else round(v, 5) for k, v in row.items()},
               "lr": opt.scheduler.get_last_lr()[0], "tokens": state["tokens"] - tokens_before,
               "seconds": round(seconds, 3), **_host_memory(procs, trimmed)}  # fmt: skip
        state["history"].append(row)
        state["seconds"] += seconds
        return row

    def evaluate(self) -> None:
        """The held-out loss, every ``eval_every`` steps and after the last (where examples are held out)."""
        started, state = time.perf_counter(), self.state
        if self.prepared.held and (state["step"] % self.plan.eval_every == 0 or self.done):
            state["evals"].append({"step": state["step"], "eval_loss": round(self.passes.held_out_loss(), 5)})
        state["overhead_seconds"] += time.perf_counter() - started

    def checkpoint(self) -> None:
        """Every ``save_every`` steps and after the last: rank 0 writes (DDP: the same weights
        everywhere); FSDP: every rank its shard. Others wait."""
        state, opt, procs = self.state, self.opt, self.procs
        if not (state["step"] % self.plan.save_every == 0 or self.done):
            return
        started = time.perf_counter()
        keep = self.config.keep_checkpoints
        if procs.fsdp:
            checkpoints.save_sharded(procs.accelerator, self.out, state["step"], opt.scheduler, opt.kd, state, keep)
        elif procs.is_main:
            checkpoints.save(self.out, state["step"], procs.unwrap(self.model), opt.optimizer, opt.scheduler, opt.kd, state, keep)
        procs.barrier()
        state["overhead_seconds"] += time.perf_counter() - started
