"""GGUF files through transformers: always loaded as plain float weights.

transformers 5.25 keeps the weights of the architectures it packs (qwen35, qwen35moe, lfm2) in
their quantized blocks whenever it can fetch a matmul kernel from the Hub, and unpacks them
otherwise. The same command would then compute differently online and offline, and packed
weights cannot be trained or saved as a student; so symkd asks for unpacked weights everywhere
(the students' loader and the ``hf`` teacher). Earlier versions always unpack and have no option.
"""

from __future__ import annotations

from typing import Any


def unpacked(options: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` ``options`` with unpacked weights asked for where they name a ``gguf_file``."""
    if "gguf_file" not in options:
        return options
    try:
        from transformers import GgufConfig
    except ImportError:
        return options
    return {**options, "quantization_config": GgufConfig(dequantize=True)}
