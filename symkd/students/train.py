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
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from symkd.errors import UserError
from symkd.students import checkpoints
from symkd.students.batching import collate, epoch_batches, target_count
from symkd.students.card import build_summary, plot_curve, write_card
from symkd.students.data import TrainingData, split_held_out, tokenize
from symkd.students.distributed import Processes, shard
from symkd.students.modeling import (
    add_lora,
    check_shared_tokenizer,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    use_bf16,
)
from symkd.students.steps import eval_loss, keeps_logits, loss_sums

#: config fields added after folders were trained, with their defaults (see ``fingerprint``)
_LATER_FIELDS = {"precision": "auto"}


class TrainConfig(BaseModel):
    """Everything a training run depends on (the CLI's ``symkd train`` options are generated from it)."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(..., description="folder for the trained model (checkpoints inside; rerun to resume)")
    base_model: str = Field("smollm2", description="HF id, folder or .gguf file; smollm2 = the embedded SmolLM2-135M")
    epochs: float = Field(3.0, gt=0, description="passes over the data (fractions allowed)")
    max_steps: Optional[int] = Field(None, gt=0, description="optimizer steps (overrides epochs)")
    batch_size: int = Field(16, gt=0, description="examples per micro-batch per process (global batch: x grad_accum x processes)")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (default 5e-5; 2e-4 with LoRA)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps with linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="clip the gradient norm to this")
    max_length: int = Field(128, gt=8, description="longest example in tokens (longer ones are left out)")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="held-out share, split by head")
    eval_every: Optional[int] = Field(None, gt=0, description="steps between held-out evaluations (default: ~10 per run)")
    save_every: Optional[int] = Field(None, gt=0, description="steps between checkpoints (default: ~10 per run)")
    keep_checkpoints: int = Field(1, gt=0, description="checkpoints kept on disk")
    lora: bool = Field(False, description="train LoRA adapters (merged into the saved model)")
    lora_r: int = Field(16, gt=0, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha (scale alpha/r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (several processes: each rank's own GPU)")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and CPUs with bf16 instructions; bf16 or fp32 to force")
    seed: int = Field(0, description="seed for initialisation, the held-out split and the batch order")
    kd_loss: Optional[str] = Field(None, description="white-box KD loss: forward_kl, reverse_kl, skew_*, jsd, taid (name:opt=v)")
    teacher_model: Optional[str] = Field(None, description="local teacher for kd_loss (same tokenizer)")
    kd_weight: float = Field(0.5, ge=0, le=1, description="loss = (1-w)·CE + w·KD")

    @field_validator("kd_loss")
    @classmethod
    def _known_loss(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            from symkd.students.losses.registry import parse_loss_spec

            parse_loss_spec(value)
        return value

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 5e-5)

    def fingerprint(self, data_digest: str, processes: int = 1) -> str:
        """What must match for a run to resume from a checkpoint (budget and out excluded).

        Fields added later count only when set away from their default, so folders trained
        before they existed keep their fingerprint; so does the process count when it is 1.
        """
        fields = self.model_dump(mode="json", exclude={"out", "keep_checkpoints", "eval_every", "save_every"})
        fields = {k: v for k, v in fields.items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
        blob = {"config": fields, "data": data_digest, **({"processes": processes} if processes > 1 else {})}
        blob = json.dumps(blob, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_digest(data: TrainingData) -> str:
    h = hashlib.sha256()
    for e in data.examples:
        h.update(json.dumps([e.prompt, e.completion, e.messages], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def train(data: TrainingData, config: TrainConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train a student on ``data``; return the summary also written to ``OUT/training.json``.

    Runs as one process or as each rank of ``torchrun`` / ``accelerate launch`` (see
    :mod:`.distributed`); then only rank 0 writes and every rank returns the summary.
    """
    import torch

    from symkd.students.losses import mix

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
    sliced = keeps_logits(model)

    train_ex, held_ex = split_held_out(data, config.eval_fraction, config.seed)
    train_tok = [t for t in (tokenize(e, tokenizer, config.max_length) for e in train_ex) if t is not None]
    held_tok = [t for t in (tokenize(e, tokenizer, config.max_length) for e in held_ex) if t is not None]
    too_long = len(train_ex) + len(held_ex) - len(train_tok) - len(held_tok)
    if not train_tok:
        raise UserError(f"no training example fits in --max-length {config.max_length} tokens")
    lengths = [len(t.input_ids) for t in train_tok]
    targets = [target_count(t) for t in train_tok]
    global_micro = config.batch_size * procs.world
    per_epoch = math.ceil(len(train_tok) / global_micro)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * per_epoch / config.grad_accum))
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

    pad_id, multiple = tokenizer.pad_token_id, 8 if device.type == "cuda" else 1
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    order = _BatchOrder(lengths, global_micro, config.seed, per_epoch)
    bar = _bar(total_steps, state["step"], progress and procs.is_main)
    model.train()
    while state["step"] < total_steps:
        started = time.perf_counter()
        micro = [order.batch(state["step"] * config.grad_accum + m) for m in range(config.grad_accum)]
        n_step = sum(targets[i] for b in micro for i in b)
        scale = procs.world / max(n_step, 1)  # DDP averages over ranks: undo it, then divide by the step's targets
        sums = torch.zeros(2, device=device)
        for m, indices in enumerate(micro):
            rows, masked = shard(indices, procs.rank, procs.world)
            batch = collate([train_tok[i] for i in rows], pad_id, multiple_of=multiple, masked=masked)
            batch = {k: v.to(device) for k, v in batch.items()}
            with procs.no_sync(model, sync=m == len(micro) - 1):
                with autocast:
                    ce, kd_sum, _ = loss_sums(model, teacher, kd, batch, sliced)
                    loss = ce if kd_sum is None else mix(ce, kd_sum, config.kd_weight)
                (loss * scale).backward()
            sums += torch.stack([ce.detach().float(), kd_sum.detach().float() if kd_sum is not None else ce.new_zeros(())])
            state["tokens"] += sum(lengths[i] for i in indices)
        procs.clip_grad_norm(model, params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        ce_mean, kd_mean = (v / max(n_step, 1) for v in procs.sum(sums))  # the step's one sync
        row = {"step": state["step"], "loss": round(ce_mean if kd is None else (1 - config.kd_weight) * ce_mean + config.kd_weight * kd_mean, 5),
               "lr": scheduler.get_last_lr()[0], **({"ce": round(ce_mean, 5), "kd": round(kd_mean, 5)} if kd is not None else {})}  # fmt: skip
        if kd is not None:
            kd.after_step(kd_mean, state["step"])  # the same reduced value on every rank
        state["history"].append(row)
        state["seconds"] += time.perf_counter() - started
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        started, last = time.perf_counter(), state["step"] == total_steps
        if held_tok and (state["step"] % eval_every == 0 or last):
            held = eval_loss(model, held_tok, 2 * config.batch_size, procs, pad_id, autocast, sliced, multiple)
            state["evals"].append({"step": state["step"], "eval_loss": round(held, 5)})
        state["overhead_seconds"] += time.perf_counter() - started
        if state["step"] % save_every == 0 or last:
            started = time.perf_counter()
            _checkpoint(procs, out, model, optimizer, scheduler, kd, state, config.keep_checkpoints)
            state["overhead_seconds"] += time.perf_counter() - started
    if bar is not None:
        bar.close()

    unwrapped = procs.unwrap(model)
    trainable, total = count_parameters(unwrapped)
    summary = build_summary(config, data, state, total_steps, per_epoch, len(train_tok), len(held_tok), too_long,
                            trainable, total, device, bf16, procs.world, train_ex[0] if train_ex else None)  # fmt: skip
    weights = procs.full_state_dict(model)
    if procs.is_main:
        _save_model(unwrapped, tokenizer, out, config.lora, progress, weights)
        plot_curve(state["history"], state["evals"], out / "training_curve.png", f"{out.name}: {config.base_model}")
        write_card(out, summary)
        shutil.rmtree(checkpoints.folder(out), ignore_errors=True)  # the finished model replaces them
    procs.barrier()
    return summary


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
    if not out.parent.exists():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if write and out.is_dir() and overwrite:
        shutil.rmtree(out)
    if write:
        out.mkdir(exist_ok=True)


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
