"""A short training loop for students: SFT on tail tokens, LoRA or full, optional white-box KD.

    summary = train(load_data("run.db", critics=["rules", "classifier"]), TrainConfig(out="student"))

Batches form one stream across epochs (length-grouped per epoch, see :mod:`.batching`), so
``--epochs 2.5`` or ``--max-steps`` are both exact budgets, and a resumed run (same config and
data: ``OUT/checkpoints``) continues at the very batch it stopped at. The finished folder
holds the model (LoRA merged in) and tokenizer via ``save_pretrained``, ``README.md`` (the
card), ``training.json`` and ``training_curve.png``. ``training.json`` is written last: its
presence marks a complete model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.students import checkpoints
from symkd.students.batching import collate, epoch_batches, target_count
from symkd.students.card import build_summary, plot_curve, write_card
from symkd.students.config import TrainConfig
from symkd.students.data import TrainingData
from symkd.students.distributed import Processes, shard
from symkd.students.modeling import (
    add_lora,
    check_shared_tokenizer,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    set_attention,
    training_attention,
    use_bf16,
)
from symkd.students.prepare import Prepared, prepare, stderr_line, step_count, step_divisor
from symkd.students.steps import eval_loss, keeps_logits, loss_sums
from symkd.threads import apply_torch_threads

__all__ = ["TrainConfig", "data_digest", "train"]

def data_digest(data: TrainingData) -> str:
    h = hashlib.sha256()
    for e in data.examples:
        h.update(json.dumps([e.prompt, e.completion, e.messages, *(["negative"] if e.negative else [])],
                            ensure_ascii=False).encode())  # fmt: skip
    return h.hexdigest()[:16]


def train(data: TrainingData, config: TrainConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train a student on ``data``; return the summary also written to ``OUT/training.json``.

    Runs as one process or as each rank of ``torchrun`` / ``accelerate launch`` (see
    :mod:`.distributed`); then only rank 0 writes and every rank returns the summary.
    """
    import torch

    if not data.examples:
        raise UserError("no training examples: the corpus is empty")
    if bool(config.kd_loss) != bool(config.teacher_model):
        raise UserError("white-box KD needs both --kd-loss and --teacher-model")
    device, dtype, _ = pick_device(config.device)
    procs = Processes(device)
    procs.check_supported(config.lora)
    device, out = procs.device, Path(config.out)
    fingerprint = config.fingerprint(data_digest(data), procs.world)
    done = _finished(out, fingerprint) if not overwrite else None
    if done is not None:
        return done  # the same training already finished here: nothing to redo
    _prepare_out(out, overwrite, write=procs.is_main)
    procs.barrier()
    ckpt = checkpoints.latest(out)
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise UserError(f"{out}: holds checkpoints of a different config or data; use a new folder or --overwrite")

    torch.manual_seed(config.seed)
    bf16 = use_bf16(device, config.precision)
    student = load_causal_lm(config.base_model, device=device, dtype=dtype)
    tokenizer, model = student.tokenizer, student.model
    teacher = None
    if config.teacher_model:
        check_shared_tokenizer(tokenizer, load_tokenizer(config.teacher_model), config.teacher_model)
        teacher = load_causal_lm(config.teacher_model, device=device, dtype=dtype, train=False).model
    if config.lora:
        model = add_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout)

    say = stderr_line if procs.is_main else None
    prepared = prepare(data, tokenizer, config, getattr(student.model.config, "max_position_embeddings", None), say)
    global_micro = config.batch_size * procs.world
    per_epoch = math.ceil(len(prepared.train) / global_micro)
    total_steps = step_count(config, prepared, global_micro, per_epoch)
    eval_every = config.eval_every or max(1, total_steps // 10)
    save_every = config.save_every or max(1, total_steps // 10)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, config.learning_rate, config.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    kd = None
    if config.kd_loss:
        from symkd.students.losses import get_loss

        kd = get_loss(config.kd_loss, total_steps=total_steps).to(device)
    state: dict[str, Any] = {"step": 0, "history": [], "evals": [], "tokens": 0, "seconds": 0.0, "fingerprint": fingerprint}
    if ckpt is not None and not procs.fsdp:
        state = checkpoints.load(ckpt, model, optimizer, scheduler, kd)
    model, optimizer = procs.prepare(model, optimizer)
    if ckpt is not None and procs.fsdp:
        state = checkpoints.load_sharded(procs.accelerator, ckpt, scheduler, kd)
    state.setdefault("overhead_seconds", 0.0)

    loop = _Loop(config, procs, model, teacher, kd, prepared, tokenizer.pad_token_id, bf16, keeps_logits(model))
    order = _BatchOrder(prepared.lengths, global_micro, config.seed, per_epoch)
    bar = _bar(total_steps, state["step"], progress and procs.is_main)
    model.train()
    while state["step"] < total_steps:
        started = time.perf_counter()
        if device.type == "cpu" and procs.world == 1:
            apply_torch_threads()  # this process's share of the cores, as other symkd processes come and go
        micro = [order.batch(state["step"] * config.grad_accum + m) for m in range(config.grad_accum)]
        row = loop.step(micro, state)
        procs.clip_grad_norm(model, params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        if kd is not None:
            kd.after_step(row["kd"], state["step"])  # the same reduced value on every rank
        row = {"step": state["step"], **{k: v if v is None else round(v, 5) for k, v in row.items()},
               "lr": scheduler.get_last_lr()[0]}  # fmt: skip
        state["history"].append(row)
        state["seconds"] += time.perf_counter() - started
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        started, last = time.perf_counter(), state["step"] == total_steps
        if prepared.held and (state["step"] % eval_every == 0 or last):
            state["evals"].append({"step": state["step"], "eval_loss": round(loop.held_out_loss(), 5)})
        state["overhead_seconds"] += time.perf_counter() - started
        if state["step"] % save_every == 0 or last:
            started = time.perf_counter()
            _checkpoint(procs, out, model, optimizer, scheduler, kd, state, config.keep_checkpoints)
            state["overhead_seconds"] += time.perf_counter() - started
    if bar is not None:
        bar.close()

    unwrapped = procs.unwrap(model)
    trainable, total = count_parameters(unwrapped)
    summary = build_summary(config, data, state, total_steps, per_epoch, prepared, trainable, total, device, bf16, procs.world)
    weights = procs.full_state_dict(model)
    if procs.is_main:
        _save_model(unwrapped, tokenizer, out, config.lora, progress, weights)
        plot_curve(state["history"], state["evals"], out / "training_curve.png", f"{out.name}: {summary['base']['model']}")
        write_card(out, summary)
        shutil.rmtree(checkpoints.folder(out), ignore_errors=True)  # the finished model replaces them
    procs.barrier()
    return summary


class _Loop:
    """One optimizer step's forwards and backwards, and the held-out loss, in the run's layout."""

    def __init__(self, config: TrainConfig, procs: Processes, model: Any, teacher: Any, kd: Any, prepared: Prepared,
                 pad_id: int, bf16: bool, sliced: bool) -> None:  # fmt: skip
        import torch

        self.config, self.procs, self.model, self.teacher, self.kd = config, procs, model, teacher, kd
        self.data, self.pad_id, self.sliced = prepared, pad_id, sliced
        self.targets = [target_count(t) for t in prepared.train]
        self.multiple = 8 if procs.device.type == "cuda" else 1
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


class _BatchOrder:
    """Global micro-batch ``g`` of the run: epoch ``g // per_epoch``, that epoch's batch ``g % per_epoch``."""

    def __init__(self, lengths: list[int], size: int, seed: int, per_epoch: int) -> None:
        self.lengths, self.size, self.seed, self.per_epoch = lengths, size, seed, per_epoch
        self.epoch, self.batches = -1, []

    def batch(self, g: int) -> list[int]:
        epoch, index = divmod(g, self.per_epoch)
        if epoch != self.epoch:
            self.batches, self.epoch = epoch_batches(self.lengths, self.size, self.seed, epoch), epoch
        return self.batches[index]


def _adamw(params: list[Any], lr: float, weight_decay: float) -> Any:
    """AdamW, fused where torch has the kernel (CPU and CUDA): on a CPU the per-tensor loop
    was a fifth of a 135M model's step."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _checkpoint(procs: Processes, out: Path, model: Any, optimizer: Any, scheduler: Any, kd: Any,
                state: dict[str, Any], keep: int) -> None:  # fmt: skip
    """Rank 0 writes (DDP: the same weights everywhere); FSDP: every rank its shard. Others wait."""
    if procs.fsdp:
        checkpoints.save_sharded(procs.accelerator, out, state["step"], scheduler, kd, state, keep)
    elif procs.is_main:
        checkpoints.save(out, state["step"], procs.unwrap(model), optimizer, scheduler, kd, state, keep)
    procs.barrier()


def _finished(out: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        summary = json.loads((out / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if summary.get("fingerprint") == fingerprint else None


def _bar(total: int, done: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True)


def _prepare_out(out: Path, overwrite: bool, write: bool = True) -> None:
    """Check ``out`` (every rank) and, where ``write`` (rank 0), empty or create it."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and not overwrite and (out / "training.json").exists():
        raise UserError(f"{out}: already holds a model trained with another config or data; use a new folder or --overwrite")
    if write and out.is_dir() and overwrite:
        shutil.rmtree(out)
    if write:
        try:
            out.mkdir(parents=True, exist_ok=True)  # students/s1 without students/ yet
        except OSError as exc:
            raise UserError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None


def _save_model(model: Any, tokenizer: Any, out: Path, lora: bool, progress: bool, weights: Any = None) -> None:
    """save_pretrained into a temporary folder, then move the files into ``out`` (``weights``:
    a gathered FSDP state dict)."""
    from transformers.utils import logging as hf_logging

    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        if lora:
            model.save_pretrained(tmp / "adapter")  # the adapter alone, for peft users
            model = model.merge_and_unload()  # plain weights: transformers and vLLM load them as is
        model.save_pretrained(tmp, **({"state_dict": weights} if weights is not None else {}))
        tokenizer.save_pretrained(tmp)
        for item in tmp.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not progress:
            hf_logging.enable_progress_bar()
