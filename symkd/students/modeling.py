"""Loading students (and local KD teachers): any causal LM by HF id, folder or ``.gguf`` file.

``"smollm2"`` names the embedded SmolLM2-135M-Instruct GGUF; transformers dequantizes a GGUF
file into ordinary float weights, so it trains like any checkpoint. Device ``auto`` picks CUDA
(bf16 autocast when supported) and the CPU (float32) otherwise; training also autocasts to
bf16 on CPUs with bf16 instructions (:func:`use_bf16`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symkd.errors import UserError


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    source: str  # what the user named, resolved (for the card)


def resolve_source(name: str) -> tuple[str, dict[str, Any]]:
    """(path or hub id, extra ``from_pretrained`` kwargs); a missing local path is a UserError."""
    if name == "smollm2" or name.startswith("embedded:"):
        from symkd.teachers.embedded import locate

        try:
            path = locate(name.removeprefix("embedded:"))
        except KeyError:
            raise UserError(f"unknown embedded model {name!r}") from None
        return str(path.parent), {"gguf_file": path.name}
    path = Path(name).expanduser()
    looks_local = name.endswith(".gguf") or name.startswith(("/", ".", "~")) or path.exists()
    if looks_local and not path.exists():
        raise UserError(f"{name}: no such model file or folder")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"{name}: not a file")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir() and not (path / "config.json").exists():
        raise UserError(f"{name}: not a model folder (no config.json)")
    return (str(path) if path.exists() else name), {}


def pick_device(name: str = "auto") -> tuple[Any, Any, bool]:
    """(torch.device, weight dtype, autocast to bf16?) for ``auto``, ``cpu``, ``cuda[:N]``."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda asked for, but no CUDA GPU is available")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return device, torch.float32, bf16


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matmul instructions (AVX512-BF16 or AMX-BF16).

    ``torch.backends.cpu.get_cpu_capability()`` says ``AVX512`` for CPUs with and without them
    and oneDNN emulates bf16 where they are missing (slower than fp32), so read the flags.
    """
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return False
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(device: Any, precision: str = "auto") -> bool:
    """bf16 autocast (weights and optimizer stay fp32) for ``precision`` auto, bf16 or fp32."""
    import torch

    if precision == "fp32":
        return False
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bf16")
        return supported
    if device.type != "cpu":
        return False
    return precision == "bf16" or cpu_has_bf16()


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    source, extra = resolve_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{name}: cannot load a tokenizer: {_first_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(name: str, *, device: Any = None, dtype: Any = None, train: bool = True) -> Loaded:
    """Tokenizer + model on ``device``; a clear UserError when it cannot be loaded."""
    from transformers import AutoModelForCausalLM

    from symkd.teachers.hf import _quiet_loading

    source, extra = resolve_source(name)
    tokenizer = load_tokenizer(name)
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise UserError(f"{name}: cannot load a causal LM: {_first_line(exc)}") from None
    if "gguf_file" in extra:
        _plain_weights(model)
    if device is not None:
        model.to(device)
    model.train(train)
    if not train:
        model.requires_grad_(False)
    return Loaded(model, tokenizer, name)


def _plain_weights(model: Any) -> None:
    """A GGUF file loads dequantized (float weights) but stays marked as quantized, which
    blocks ``save_pretrained``; drop the mark so the trained model saves as ordinary weights."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def add_lora(model: Any, r: int, alpha: int, dropout: float, targets: str | list[str] = "all-linear") -> Any:
    """Wrap ``model`` with LoRA adapters (peft); only the adapters train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("LoRA needs peft: pip install peft") from None
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def check_shared_tokenizer(student: Any, teacher: Any, teacher_name: str) -> None:
    """White-box KD compares distributions token by token: the vocabularies must be the same."""
    s, t = student.get_vocab(), teacher.get_vocab()
    if s == t:
        return
    only_s = sorted(set(s) - set(t))
    only_t = sorted(set(t) - set(s))
    moved = sorted(k for k in set(s) & set(t) if s[k] != t[k])
    example = (f"{only_s[0]!r} only in the student" if only_s else f"{only_t[0]!r} only in the teacher"
               if only_t else f"{moved[0]!r} has id {s[moved[0]]} vs {t[moved[0]]}")  # fmt: skip
    raise UserError(
        f"KD teacher {teacher_name!r} does not share the student's tokenizer "
        f"({len(s)} vs {len(t)} tokens; {example}); white-box KD needs one vocabulary"
    )


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0][:300]


#: eager attention keeps every score for the backward: allowed up to this many bytes per micro-batch
EAGER_ATTENTION_BYTES = 2 << 30


def training_attention(device: Any, config: Any, rows: int, width: int) -> str:
    """The attention implementation for a training micro-batch of ``rows`` x ``width`` tokens.

    On a CPU, eager attention (batched matmuls) trains 15-20 % faster than sdpa for the short rows
    students see (measured on SmolLM2-135M, bench/train_speed.py): torch's CPU flash-attention
    backward costs ~10 ms per layer even for 20-token rows. Eager keeps the scores for the
    backward (O(width²)), so wide micro-batches stay on sdpa; GPUs always use sdpa.
    """
    if device.type != "cpu":
        return "sdpa"
    heads = getattr(config, "num_attention_heads", 16) or 16
    layers = getattr(config, "num_hidden_layers", 32) or 32
    scores = rows * heads * layers * width * width * 6  # fp32 softmax + bf16 copy, per layer
    return "eager" if scores <= EAGER_ATTENTION_BYTES else "sdpa"


def set_attention(model: Any, implementation: str) -> None:
    """Switch a (peft-unwrapped) transformers model's attention implementation when it differs."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) != implementation and hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation(implementation)
