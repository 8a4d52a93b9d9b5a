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
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from symkd.errors import UserError
from symkd.students import checkpoints
from symkd.students.batching import collate, epoch_batches
from symkd.students.card import plot_curve, write_card
from symkd.students.data import TrainingData, split_held_out, tokenize
from symkd.students.modeling import (
    add_lora,
    check_shared_tokenizer,
    count_parameters,
    load_causal_lm,
    load_tokenizer,
    pick_device,
)

#: dense bf16 peak FLOP/s used for MFU, by GPU name fragment
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path
    base_model: str = "smollm2"
    epochs: float = Field(3.0, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    lr: Optional[float] = Field(None, gt=0)  # default: 5e-5 full, 2e-4 LoRA
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(128, gt=8)
    eval_fraction: float = Field(0.05, ge=0, lt=1)
    eval_every: Optional[int] = Field(None, gt=0)  # default: ~10 evaluations per run
    save_every: Optional[int] = Field(None, gt=0)  # default: ~10 checkpoints per run
    keep_checkpoints: int = Field(1, gt=0)
    lora: bool = False
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    device: str = "auto"
    seed: int = 0
    kd_loss: Optional[str] = None
    teacher_model: Optional[str] = None
    kd_weight: float = Field(0.5, ge=0, le=1)

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

    def fingerprint(self, data_digest: str) -> str:
        """What must match for a run to resume from a checkpoint (budget and out excluded)."""
        fields = self.model_dump(mode="json", exclude={"out", "keep_checkpoints", "eval_every", "save_every"})
        blob = json.dumps({"config": fields, "data": data_digest}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def data_digest(data: TrainingData) -> str:
    h = hashlib.sha256()
    for e in data.examples:
        h.update(json.dumps([e.prompt, e.completion, e.messages], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def train(data: TrainingData, config: TrainConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train a student on ``data``; return the summary also written to ``OUT/training.json``."""
    import torch

    if not data.examples:
        raise UserError("no training examples: the corpus is empty")
    if bool(config.kd_loss) != bool(config.teacher_model):
        raise UserError("white-box KD needs both --kd-loss and --teacher-model")
    out = Path(config.out)
    fingerprint = config.fingerprint(data_digest(data))
    done = _finished(out, fingerprint) if not overwrite else None
    if done is not None:
        return done  # the same training already finished here: nothing to redo
    _prepare_out(out, overwrite)
    ckpt = checkpoints.latest(out)
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise UserError(f"{out}: holds checkpoints of a different config or data; use a new folder or --overwrite")

    torch.manual_seed(config.seed)
    device, dtype, bf16 = pick_device(config.device)
    student = load_causal_lm(config.base_model, device=device, dtype=dtype)
    tokenizer, model = student.tokenizer, student.model
    teacher = None
    if config.teacher_model:
        check_shared_tokenizer(tokenizer, load_tokenizer(config.teacher_model), config.teacher_model)
        teacher = load_causal_lm(config.teacher_model, device=device, dtype=dtype, train=False).model
    if config.lora:
        model = add_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout)

    train_ex, held_ex = split_held_out(data, config.eval_fraction, config.seed)
    train_tok = [t for t in (tokenize(e, tokenizer, config.max_length) for e in train_ex) if t is not None]
    held_tok = [t for t in (tokenize(e, tokenizer, config.max_length) for e in held_ex) if t is not None]
    too_long = len(train_ex) + len(held_ex) - len(train_tok) - len(held_tok)
    if not train_tok:
        raise UserError(f"no training example fits in --max-length {config.max_length} tokens")
    lengths = [len(t.input_ids) for t in train_tok]
    per_epoch = math.ceil(len(train_tok) / config.batch_size)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * per_epoch / config.grad_accum))
    eval_every = config.eval_every or max(1, total_steps // 10)
    save_every = config.save_every or max(1, total_steps // 10)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    kd = None
    if config.kd_loss:
        from symkd.students.losses import get_loss

        kd = get_loss(config.kd_loss, total_steps=total_steps)
    state: dict[str, Any] = {"step": 0, "history": [], "evals": [], "tokens": 0, "seconds": 0.0, "fingerprint": fingerprint}
    if ckpt is not None:
        state = checkpoints.load(ckpt, model, optimizer, scheduler, kd)

    pad_id = tokenizer.pad_token_id
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    bar = _bar(total_steps, state["step"], progress)
    batches: list[list[int]] = []
    epoch_loaded = -1
    started = time.perf_counter()
    model.train()
    while state["step"] < total_steps:
        step_loss = step_tokens = 0.0
        for micro in range(config.grad_accum):
            g = state["step"] * config.grad_accum + micro
            epoch, index = divmod(g, per_epoch)
            if epoch != epoch_loaded:
                batches, epoch_loaded = epoch_batches(lengths, config.batch_size, config.seed, epoch), epoch
            batch = {k: v.to(device) for k, v in collate([train_tok[i] for i in batches[index]], pad_id).items()}
            with autocast:
                loss = _loss(model, teacher, kd, batch, config.kd_weight)
            (loss / config.grad_accum).backward()
            step_loss += loss.item() / config.grad_accum
            step_tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        if kd is not None:
            kd.after_step(step_loss, state["step"])
        state["tokens"] += step_tokens
        state["history"].append({"step": state["step"], "loss": round(step_loss, 5), "lr": scheduler.get_last_lr()[0]})
        elapsed = state["seconds"] + time.perf_counter() - started
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{state['tokens'] / max(elapsed, 1e-9):.0f}")
        last = state["step"] == total_steps
        if held_tok and (state["step"] % eval_every == 0 or last):
            state["evals"].append({"step": state["step"], "eval_loss": round(_eval_loss(model, held_tok, config, device, pad_id, autocast), 5)})
            model.train()
        if state["step"] % save_every == 0 or last:
            state["seconds"] = elapsed
            started = time.perf_counter()
            checkpoints.save(out, state["step"], model, optimizer, scheduler, kd, state, config.keep_checkpoints)
    if bar is not None:
        bar.close()

    trainable, total = count_parameters(model)
    summary = _summary(config, data, state, total_steps, per_epoch, len(train_tok), len(held_tok), too_long,
                       trainable, total, device, bf16, train_ex[0] if train_ex else None)  # fmt: skip
    _save_model(model, tokenizer, out, config.lora, progress)
    plot_curve(state["history"], state["evals"], out / "training_curve.png", f"{out.name}: {config.base_model}")
    write_card(out, summary)
    shutil.rmtree(checkpoints.folder(out), ignore_errors=True)  # the finished model replaces them
    return summary


def _finished(out: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        summary = json.loads((out / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if summary.get("fingerprint") == fingerprint else None


def _loss(model: Any, teacher: Any, kd: Any, batch: dict[str, Any], kd_weight: float) -> Any:
    out = model(**batch)
    if kd is None:
        return out.loss
    import torch

    from symkd.students.losses import mix, shift_for_causal_lm

    with torch.no_grad():
        t_logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    vocab = min(out.logits.shape[-1], t_logits.shape[-1])  # embeddings may be padded differently
    s, t, y = shift_for_causal_lm(out.logits[..., :vocab], t_logits[..., :vocab], batch["labels"])
    return mix(out.loss, kd(s, t, y), kd_weight)


def _eval_loss(model: Any, held: list[Any], config: TrainConfig, device: Any, pad_id: int, autocast: Any) -> float:
    """Token-weighted cross-entropy on the held-out examples' completion tokens."""
    import torch

    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for start in range(0, len(held), config.batch_size):
            batch = {k: v.to(device) for k, v in collate(held[start : start + config.batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            with autocast:
                loss = model(**batch).loss
            total += float(loss) * n
            count += n
    return total / max(count, 1)


def _bar(total: int, done: int, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and overwrite:
        shutil.rmtree(out)
    elif out.is_dir() and (out / "training.json").exists():
        raise UserError(f"{out}: already holds a model trained with another config or data; use a new folder or --overwrite")
    if not out.parent.exists():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)


def _save_model(model: Any, tokenizer: Any, out: Path, lora: bool, progress: bool) -> None:
    """save_pretrained into a temporary folder, then move the files into ``out``."""
    from transformers.utils import logging as hf_logging

    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out))
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        if lora:
            model.save_pretrained(tmp / "adapter")  # the adapter alone, for peft users
            model = model.merge_and_unload()  # plain weights: transformers and vLLM load them as is
        model.save_pretrained(tmp)
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


def _hardware(device: Any, bf16: bool) -> dict[str, Any]:
    import platform

    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return {"device": "cuda", "name": name, "bf16": bf16, "description": f"{name} (bf16 autocast)" if bf16 else name}
    cores = os.cpu_count() or 1
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "description": f"CPU, {cores} cores, {torch.get_num_threads()} torch threads, float32"}  # fmt: skip


def _summary(config: TrainConfig, data: TrainingData, state: dict[str, Any], total_steps: int, per_epoch: int,
             n_train: int, n_held: int, too_long: int, trainable: int, total: int, device: Any, bf16: bool,
             example: Any) -> dict[str, Any]:  # fmt: skip
    import symkd

    hardware = _hardware(device, bf16)
    tokens_per_s = state["tokens"] / max(state["seconds"], 1e-9)
    peak = next((v for k, v in PEAK_FLOPS.items() if k in hardware.get("name", "")), None) if device.type == "cuda" else None
    mfu = 6 * total * tokens_per_s / peak if peak else None  # 6N FLOPs per token (forward + backward)
    final_train = sum(h["loss"] for h in state["history"][-10:]) / max(1, len(state["history"][-10:]))
    return {
        "symkd_version": getattr(symkd, "__version__", "0"),
        "fingerprint": state["fingerprint"],
        "config": {**config.model_dump(mode="json"), "lr": config.learning_rate},
        "data": {"source": data.source, "examples": len(data.examples), "train_examples": n_train,
                 "eval_examples": n_held, "too_long": too_long,
                 "example_prompt": example.prompt if example else "", "example_completion": example.completion if example else ""},
        "steps": state["step"],
        "epochs": state["step"] * config.grad_accum / per_epoch,
        "total_steps": total_steps,
        "parameters": {"trainable": trainable, "total": total},
        "final": {"train_loss": round(final_train, 5) if state["history"] else None,
                  "eval_loss": state["evals"][-1]["eval_loss"] if state["evals"] else None},
        "throughput": {"tokens": state["tokens"], "seconds": round(state["seconds"], 2),
                       "tokens_per_s": round(tokens_per_s, 1), "mfu": round(mfu, 4) if mfu else None},
        "hardware": hardware,
        "history": state["history"],
        "evals": state["evals"],
    }  # fmt: skip
