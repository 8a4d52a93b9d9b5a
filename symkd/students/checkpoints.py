"""Training checkpoints: written whole or not at all, found again on resume.

``OUT/checkpoints/step-00000123/`` holds ``trainable.pt`` (the parameters that train: every
weight for full fine-tuning, the adapters for LoRA), ``optimizer.pt``, ``scheduler.pt``,
``kd_loss.pt`` (stateful KD losses such as TAID) and ``state.json`` (step, history, config
fingerprint). A checkpoint is built under a temporary name and renamed into place, so a run
killed while saving leaves the previous checkpoint intact. Several processes (DDP): rank 0
writes, the weights and optimizer state being the same on every rank. FSDP, where each rank
holds a shard: :func:`save_sharded` has ``accelerate``'s ``save_state`` write ``accelerate/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from symkd.errors import UserError

_NAME = re.compile(r"^step-(\d{8})$")


def folder(out: Path) -> Path:
    return out / "checkpoints"


def latest(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out``, or None."""
    root = folder(out)
    if not root.is_dir():
        return None
    found = sorted(p for p in root.iterdir() if _NAME.match(p.name) and (p / "state.json").is_file())
    return found[-1] if found else None


def trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(out: Path, step: int, model: Any, optimizer: Any, scheduler: Any, kd_loss: Any, state: dict[str, Any], keep: int) -> Path:
    import torch

    root = folder(out)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        torch.save(trainable_state(model), tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        if kd_loss is not None:
            torch.save(kd_loss.state_dict(), tmp / "kd_loss.pt")
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if _NAME.match(p.name))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.glob(".partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def load(path: Path, model: Any, optimizer: Any, scheduler: Any, kd_loss: Any) -> dict[str, Any]:
    """Restore everything saved by :func:`save`; return its ``state.json``."""
    import torch

    weights = torch.load(path / "trainable.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise UserError(f"{path}: checkpoint does not fit this model (no parameter {missing[0]!r})")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    if kd_loss is not None and (path / "kd_loss.pt").exists():
        kd_loss.load_state_dict(torch.load(path / "kd_loss.pt", map_location="cpu", weights_only=False))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


def save_sharded(accelerator: Any, out: Path, step: int, scheduler: Any, kd_loss: Any, state: dict[str, Any], keep: int) -> Path:
    """FSDP: every rank writes its part through ``accelerator.save_state``; rank 0 the rest and the rename."""
    import torch

    root = folder(out)
    tmp, final = root / f".partial-{step:08d}", root / f"step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "accelerate"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        if kd_loss is not None:
            torch.save(kd_loss.state_dict(), tmp / "kd_loss.pt")
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(root, keep)
    return final


def load_sharded(accelerator: Any, path: Path, scheduler: Any, kd_loss: Any) -> dict[str, Any]:
    """Counterpart of :func:`save_sharded` (after ``accelerator.prepare``)."""
    import torch

    accelerator.load_state(str(path / "accelerate"))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    if kd_loss is not None and (path / "kd_loss.pt").exists():
        kd_loss.load_state_dict(torch.load(path / "kd_loss.pt", map_location="cpu", weights_only=False))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))
