"""Loading students (and local KD teachers): any causal LM by HF id, folder, ``.gguf`` file or
LoRA adapter folder (a student's ``adapter/``: its base loaded, the adapter merged in).

``"smollm2"`` names the embedded SmolLM2-135M-Instruct GGUF; transformers dequantizes a GGUF
file into ordinary float weights, so it trains like any checkpoint. Its Hub id,
``HuggingFaceTB/SmolLM2-135M-Instruct`` (what a student's adapter and card name as the base,
:func:`portable_name`), loads the same embedded file offline unless the Hub copy is in the
local Hugging Face cache. Device ``auto`` picks CUDA (bf16 autocast when supported) and the CPU
(float32) otherwise; training also autocasts to bf16 on CPUs with bf16 instructions (:func:`use_bf16`).
"""

from __future__ import annotations

import json
import os
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
    embedded = _embedded_name(name)
    if embedded is not None:
        from symkd.teachers.embedded import locate

        try:
            path = locate(embedded)
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


def _embedded_name(name: str) -> str | None:
    """The embedded model ``name`` stands for: ``smollm2``, ``embedded:NAME``, or the Hub id an
    embedded model comes from when that id is not in the local Hub cache and the package is installed."""
    if name == "smollm2" or name.startswith("embedded:"):
        return name.removeprefix("embedded:")
    from symkd.teachers.embedded import by_origin, offline_stand_in

    return by_origin(name) if offline_stand_in(name) is not None else None


def hub_id(name: str) -> str | None:
    """The Hub id a model name stands for: an embedded model's or its GGUF file's origin, a Hub
    cache snapshot's id, a name that is no local path (as given); None for other local models."""
    from symkd.teachers.embedded import EMBEDDED

    embedded = EMBEDDED.get(name.removeprefix("embedded:"))
    if embedded is not None:
        return embedded.origin
    path = Path(name).expanduser()
    if not path.exists():
        return None if path.is_absolute() or name.startswith(("./", "../", "~")) else name
    path = path.resolve()
    for entry in EMBEDDED.values():
        if path.name == entry.filename and path.parent.name == entry.package:
            return entry.origin
    cached = next((p for p in path.parts if p.startswith("models--") and "--" in p[8:]), None)
    return cached[8:].replace("--", "/", 1) if cached else None


def portable_name(name: str, folder: Path) -> str:
    """How a student folder names a model it depends on (base, KD teacher), valid on any machine:
    its Hub id (:func:`hub_id`), else its path relative to ``folder`` (``./`` or ``../`` first,
    never mistaken for a Hub id), or its bare name when the two share only the root."""
    return hub_id(name) or relative_path(Path(name).expanduser(), folder)


def relative_path(path: Path, folder: Path) -> str:
    """``path`` from ``folder`` as ``./x`` or ``../x``; the bare name when the two share only the root."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    if os.path.commonpath([path, folder]) == path.anchor:
        return path.name
    relative = Path(os.path.relpath(path, folder)).as_posix()
    return relative if relative.split("/")[0] in (".", "..") else f"./{relative}"


ADAPTER_CONFIG = "adapter_config.json"


def adapter_folder(name: str) -> Path | None:
    """``name`` as a LoRA adapter folder (``adapter_config.json``, no ``config.json``), else None."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
        return path
    return None


def adapter_base(adapter: Path) -> str:
    """The base an adapter folder names, as symkd loads it: a relative path counts from the
    student folder (the adapter's parent in symkd's layout ``S/adapter``), a Hub id as is."""
    try:
        base = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{adapter}: unreadable {ADAPTER_CONFIG}: {_first_line(exc)}") from None
    if not isinstance(base, str) or not base:
        raise UserError(f"{adapter}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    if base.split("/")[0] in (".", ".."):
        return str(_student_home(adapter) / base)
    return base


def _student_home(adapter: Path) -> Path:
    return adapter.parent if (adapter.parent / "training.json").is_file() else adapter


def _adapter_tokenizer(adapter: Path) -> str:
    """Where an adapter's tokenizer is: its own folder, its student folder, else its base."""
    for folder in (adapter, _student_home(adapter)):
        if (folder / "tokenizer_config.json").is_file():
            return str(folder)
    return adapter_base(adapter)


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

    adapter = adapter_folder(name)
    source, extra = resolve_source(_adapter_tokenizer(adapter) if adapter else name)
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

    from symkd.teachers import gguf
    from symkd.teachers.hf import _quiet_loading

    adapter = adapter_folder(name)
    if adapter is not None:
        return Loaded(_place(_merged_adapter(adapter, dtype), device, train), load_tokenizer(name), name)
    source, extra = resolve_source(name)
    tokenizer = load_tokenizer(name)
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **gguf.unpacked(extra))
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise UserError(f"{name}: cannot load a causal LM: {_first_line(exc)}") from None
    if "gguf_file" in extra:
        _plain_weights(model)
    return Loaded(_place(model, device, train), tokenizer, name)


def _place(model: Any, device: Any, train: bool) -> Any:
    if device is not None:
        model.to(device)
    model.train(train)
    model.requires_grad_(train)
    return model


def _merged_adapter(adapter: Path, dtype: Any) -> Any:
    """An adapter folder's base (resolved as :func:`adapter_base` says) with the adapter merged in."""
    try:
        from peft import PeftModel
    except ImportError:
        raise UserError(f"{adapter}: a LoRA adapter needs peft: pip install peft") from None
    base = load_causal_lm(adapter_base(adapter), dtype=dtype, train=False).model
    try:
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{adapter}: cannot load the LoRA adapter: {_first_line(exc)}") from None


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
#: and only for rows up to this many tokens: beyond, sdpa trains faster (bench/attention_widths.py)
EAGER_ATTENTION_MAX_WIDTH = 160


def training_attention(device: Any, config: Any, rows: int, width: int) -> str:
    """The attention implementation for a training micro-batch of ``rows`` x ``width`` tokens.

    On a CPU, eager attention (batched matmuls) trains faster than sdpa for short packed rows and
    slower for wider ones. Measured with bench/attention_widths.py (SmolLM2-135M, bf16, 8 packed
    rows with the trainer's per-sequence mask, 2-core Xeon with AVX512-BF16, 2026-12-07; best of 3
    forward + backward, tokens/s eager vs sdpa): width 128 666 vs 588 (CoT rows); 192 661 vs 685;
    256 725 vs 666 (agent rows) and 613 vs 631 (CoT rows); 320 601 vs 668; 384 604 vs 631; 448 425
    vs 661; with 4 rows sdpa was ahead from 320 up as well, so the crossover is a width, not a
    memory size. Eager also keeps the scores for the backward (O(width²)), hence the byte cap for
    micro-batches of many rows; GPUs always use sdpa.
    """
    if device.type != "cpu" or width > EAGER_ATTENTION_MAX_WIDTH:
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
