"""One process or several: what the trainer needs from ``accelerate`` (DDP, FSDP), and no more.

``symkd train`` runs unchanged as one process or under ``torchrun`` / ``accelerate launch``
(both set ``WORLD_SIZE``). Several processes go through :class:`accelerate.Accelerator`
(process group, device per rank, DDP or FSDP wrapping, ``no_sync`` during accumulation,
gradient clipping, collectives); one process stays plain torch, so ``--device cuda:1`` keeps
meaning what it says and nothing is wrapped.

Batches: every process walks the same length-grouped stream of *global* micro-batches of
``batch_size * world_size`` examples and takes the rows ``rank::world_size`` of each
(:func:`shard`), so the data a step sees does not depend on how many processes share it. A
rank whose share of a short last batch is empty trains on a fully masked row instead (zero
loss, zero gradient), so every rank runs the same forwards and collectives.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Sequence

from symkd.errors import UserError


def world_size() -> int:
    """Processes in this launch (``WORLD_SIZE``, set by torchrun and accelerate launch)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def shard(indices: Sequence[int], rank: int, world: int) -> tuple[list[int], bool]:
    """This rank's rows of a global batch, and whether they are a masked stand-in (empty share)."""
    mine = list(indices[rank::world])
    return (mine, False) if mine else ([indices[0]], True)


class Processes:
    """The trainer's view of its process group; a plain one-process stand-in when alone."""

    def __init__(self, device: Any) -> None:
        self.accelerator: Any = None
        self.device, self.rank, self.world = device, 0, 1
        if world_size() > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=device.type == "cpu")
            self.device = self.accelerator.device
            self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def fsdp(self) -> bool:
        return self.accelerator is not None and self.accelerator.distributed_type.name == "FSDP"

    def prepare(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """Wrap for DDP/FSDP (the scheduler stays unwrapped: accelerate would step it once per rank)."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model: Any) -> Any:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def no_sync(self, model: Any, sync: bool) -> Any:
        """Skip the gradient all-reduce on accumulation micro-batches but the last."""
        if self.accelerator is None or sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def clip_grad_norm(self, model: Any, params: list[Any], max_norm: float) -> None:
        import torch

        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            self.accelerator.clip_grad_norm_(model.parameters(), max_norm)

    def sum(self, values: Any) -> list[float]:
        """Element-wise sum of a 1-D tensor over all ranks, as floats (one sync)."""
        if self.accelerator is not None:
            values = self.accelerator.reduce(values.to(self.device), reduction="sum")
        return [float(v) for v in values.detach().cpu().tolist()]

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    def full_state_dict(self, model: Any) -> dict[str, Any] | None:
        """Whole-model weights for saving (a collective under FSDP); None: use the model's own."""
        if not self.fsdp:
            return None
        return self.accelerator.get_state_dict(model)

    def check_supported(self, lora: bool) -> None:
        if self.fsdp and lora:
            raise UserError("LoRA under FSDP is not supported: launch with DDP (the default of accelerate launch)")


def is_main_process() -> bool:
    """Rank 0 of a launch (or a lone process): the one that should print and write DB rows."""
    return os.environ.get("RANK", "0") == "0"
