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
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from symkd.errors import UserError
from symkd.students import checkpoints
from symkd.students.card import write_card
from symkd.students.summary import build_summary, plot_curve, redi_warning
from symkd.students.config import TrainConfig
from symkd.students.data import TrainingData
from symkd.students.distributed import Processes
from symkd.students.loop import BatchOrder, Optimization, Passes, Plan, Run
from symkd.students.modeling import (
    add_lora,
    check_shared_tokenizer,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    use_bf16,
)
from symkd.students.prepare import prepare, stderr_line
from symkd.students.steps import keeps_logits

__all__ = ["TrainConfig", "data_digest", "train"]

def data_digest(data: TrainingData) -> str:
    h = hashlib.sha256()
    for e in data.examples:
        extra = (["negative"] if e.negative else []) + ([e.completion_turns] if e.completion_turns != 1 else [])
        h.update(json.dumps([e.prompt, e.completion, e.messages, *extra], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def train(data: TrainingData, config: TrainConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train a student on ``data``; return the summary also written to ``OUT/training.json``.

    Runs as one process or as each rank of ``torchrun`` / ``accelerate launch`` (see
    :mod:`.distributed`); then only rank 0 writes and every rank returns the summary.
    """
    where = _locate(data, config)
    done = _finished(where.out, where.fingerprint) if not overwrite else None
    if done is not None:
        return done  # the same training already finished here: nothing to redo
    ckpt = _claim(where, overwrite)
    run = _prepare_run(data, config, where, ckpt)
    bar = _bar(run.plan.total_steps, run.state["step"], progress and where.procs.is_main)
    run.model.train()
    while not run.done:
        row = run.step()
        _show(bar, row, run.state)
        run.evaluate()
        run.checkpoint()
    if bar is not None:
        bar.close()
    return _finish(data, run, progress)


@dataclass(frozen=True)
class _Where:
    """Where a run trains: its processes (and device), the models' dtype, its folder and fingerprint."""

    procs: Processes
    dtype: Any
    out: Path
    fingerprint: str


def _locate(data: TrainingData, config: TrainConfig) -> _Where:
    """Check the request; pick the device and process group; fingerprint config and data."""
    if not data.examples:
        raise UserError("no training examples: the corpus is empty")
    if bool(config.kd_loss) != bool(config.teacher_model):
        raise UserError("white-box KD needs both --kd-loss and --teacher-model")
    device, dtype, _ = pick_device(config.device)
    procs = Processes(device)
    procs.check_supported(config.lora)
    return _Where(procs, dtype, Path(config.out), config.fingerprint(data_digest(data), procs.world))


def _claim(where: _Where, overwrite: bool) -> Path | None:
    """Make the folder ready (rank 0), then every rank: the checkpoint to resume from, if any."""
    out, procs = where.out, where.procs
    _prepare_out(out, overwrite, write=procs.is_main)
    procs.barrier()
    ckpt = checkpoints.latest(out)
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != where.fingerprint:
            raise UserError(f"{out}: holds checkpoints of a different config or data; use a new folder or --overwrite")
    return ckpt


def _prepare_run(data: TrainingData, config: TrainConfig, where: _Where, ckpt: Path | None) -> Run:
    """Load the models, tokenize the data, plan the steps, build the optimizer; resume from ``ckpt``."""
    import torch

    procs = where.procs
    torch.manual_seed(config.seed)
    bf16 = use_bf16(procs.device, config.precision)
    student = load_causal_lm(config.base_model, device=procs.device, dtype=where.dtype)
    tokenizer, model = student.tokenizer, student.model
    teacher = None
    if config.teacher_model:
        check_shared_tokenizer(tokenizer, load_tokenizer(config.teacher_model), config.teacher_model)
        teacher = load_causal_lm(config.teacher_model, device=procs.device, dtype=where.dtype, train=False).model
    if config.lora:
        model = add_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout)

    say = stderr_line if procs.is_main else None
    prepared = prepare(data, tokenizer, config, getattr(student.model.config, "max_position_embeddings", None), say)
    plan = Plan.of(config, prepared, procs.world)
    opt = _optimization(model, config, plan.total_steps, procs.device)
    model, opt, state = _resume(procs, ckpt, model, opt, where.fingerprint)
    passes = Passes(config, procs, model, teacher, opt.kd, prepared, tokenizer.pad_token_id, bf16, keeps_logits(model))
    order = BatchOrder(prepared.lengths, plan.global_micro, config.seed, plan.per_epoch)
    return Run(config, procs, where.out, model, tokenizer, opt, plan, prepared, passes, order, state, bf16)


def _optimization(model: Any, config: TrainConfig, total_steps: int, device: Any) -> Optimization:
    """AdamW over the trainable parameters, linear warmup and decay, and the KD loss if any."""
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _adamw(params, config.learning_rate, config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    kd = None
    if config.kd_loss:
        from symkd.students.losses import get_loss

        kd = get_loss(config.kd_loss, total_steps=total_steps).to(device)
    return Optimization(params, optimizer, scheduler, kd)


def _resume(procs: Processes, ckpt: Path | None, model: Any, opt: Optimization,
            fingerprint: str) -> tuple[Any, Optimization, dict[str, Any]]:  # fmt: skip
    """Wrap model and optimizer for the process group; load ``ckpt`` (a plain checkpoint before
    wrapping, FSDP's sharded one after). Returns them and the run's state (fresh without ``ckpt``)."""
    state: dict[str, Any] = {"step": 0, "history": [], "evals": [], "tokens": 0, "seconds": 0.0, "fingerprint": fingerprint}
    if ckpt is not None and not procs.fsdp:
        state = checkpoints.load(ckpt, model, opt.optimizer, opt.scheduler, opt.kd)
    model, optimizer = procs.prepare(model, opt.optimizer)
    if ckpt is not None and procs.fsdp:
        state = checkpoints.load_sharded(procs.accelerator, ckpt, opt.scheduler, opt.kd)
    state.setdefault("overhead_seconds", 0.0)
    return model, replace(opt, optimizer=optimizer), state


def _show(bar: Any, row: dict[str, Any], state: dict[str, Any]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")


def _finish(data: TrainingData, run: Run, progress: bool) -> dict[str, Any]:
    """Rank 0 saves the model, curve, card and ``training.json`` (last), and drops the checkpoints."""
    procs, out, state, plan = run.procs, run.out, run.state, run.plan
    unwrapped = procs.unwrap(run.model)
    trainable, total = count_parameters(unwrapped)
    summary = build_summary(run.config, data, state, plan.total_steps, plan.per_epoch, run.prepared, trainable, total,
                            procs.device, run.bf16, procs.world)  # fmt: skip
    weights = procs.full_state_dict(run.model)
    if procs.is_main:
        _save_model(unwrapped, run.tokenizer, out, run.config.lora, progress, weights)
        plot_curve(state["history"], state["evals"], out / "training_curve.png", f"{out.name}: {summary['base']['model']}")
        write_card(out, summary)
        shutil.rmtree(checkpoints.folder(out), ignore_errors=True)  # the finished model replaces them
        if warning := redi_warning(summary):
            stderr_line(warning)
    procs.barrier()
    return summary


def _adamw(params: list[Any], lr: float, weight_decay: float) -> Any:
    """AdamW, fused where torch has the kernel (CPU and CUDA): on a CPU the per-tensor loop
    was a fifth of a 135M model's step."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


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
