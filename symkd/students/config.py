"""What a training run depends on: :class:`TrainConfig` (``symkd train`` options are generated from it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from symkd.errors import UserError

#: config fields added after folders were trained, with the value that reproduces the old
#: behaviour (see ``fingerprint``)
_LATER_FIELDS = {"precision": "auto", "packing": True, "loss": "sft", "redi_alpha": 0.8, "train_tokens": None,
                 "max_dropped_share": 0.01}  # fmt: skip


class TrainConfig(BaseModel):
    """Everything a training run depends on (the CLI's ``symkd train`` options are generated from it)."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(..., description="folder for the trained model (checkpoints inside; rerun to resume)")
    base_model: str = Field("smollm2", description="HF id, folder or .gguf file; smollm2 = the embedded SmolLM2-135M")
    epochs: float = Field(3.0, gt=0, description="passes over the data (fractions allowed)")
    max_steps: Optional[int] = Field(None, gt=0, description="optimizer steps (overrides epochs)")
    train_tokens: Optional[int] = Field(
        None, gt=0, description="train until this many tokens (prompts included) were seen: sets the steps, overrides epochs")
    batch_size: int = Field(16, gt=0, description="examples per micro-batch per process (global batch: x grad_accum x processes)")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    lr: Optional[float] = Field(None, gt=0, description="learning rate (default 5e-5; 2e-4 with LoRA)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of the steps with linear learning-rate warm-up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="clip the gradient norm to this")
    max_length: Optional[int] = Field(
        None, gt=8, description="longest example in tokens, longer ones are left out (default: the longest example, up to 2048)")
    max_dropped_share: float = Field(
        0.01, ge=0, le=1, description="refuse to train when more than this share of examples is longer than max_length (1: allow)")
    pad_multiple: Optional[int] = Field(
        None, gt=0, description="round micro-batch widths up to a multiple of this (default: 8 on a GPU, 64 on a CPU: fewer shapes, flatter memory)")
    packing: bool = Field(True, description="pack a micro-batch's examples into rows (same loss, no padding computed)")
    loss: Literal["sft", "redi"] = Field(
        "sft", description="sft: cross-entropy on positives; redi: also push down negatives (Xu et al. 2025)")
    redi_alpha: float = Field(0.8, gt=0, le=1, description="REDI weight on negatives' length-normalised log-likelihood")
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

    @model_validator(mode="after")
    def _one_budget(self) -> "TrainConfig":
        if self.max_steps is not None and self.train_tokens is not None:
            raise UserError("--max-steps and --train-tokens both set the budget: give one")
        if self.loss == "redi" and self.kd_loss:
            raise UserError("--loss redi does not combine with white-box KD (--kd-loss)")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 5e-5)

    def fingerprint(self, data_digest: str, processes: int = 1) -> str:
        """What must match for a run to resume from a checkpoint (budget and out excluded).

        Fields added later count only when set away from their default, so folders trained
        before they existed keep their fingerprint; so does the process count when it is 1.
        """
        fields = self.model_dump(mode="json", exclude={"out", "keep_checkpoints", "eval_every", "save_every", "pad_multiple"})
        fields = {k: v for k, v in fields.items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
        blob = {"config": fields, "data": data_digest, **({"processes": processes} if processes > 1 else {})}
        blob = json.dumps(blob, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
