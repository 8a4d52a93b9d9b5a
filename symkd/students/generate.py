"""Batched tail generation from a trained student (greedy or beam search)."""

from __future__ import annotations

from typing import Any, Sequence


def clean_output(text: str) -> str:
    """The first line of a generation, stripped; ``[GEN]`` echoes removed."""
    text = text.split("\n")[0].replace("[GEN]", " ")
    return " ".join(text.split())


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    num_beams: int = 1,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "generate",
) -> list[str]:
    """One continuation per prompt (same order); prompts are batched by length, left-padded."""
    import torch
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=num_beams, early_stopping=num_beams > 1,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc=desc, unit="line", dynamic_ncols=True)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            gen = model.generate(**enc, generation_config=config)
            new = gen[:, enc["input_ids"].shape[1] :]
            for i, tokens in zip(idx, new):
                out[i] = clean_output(tokenizer.decode(tokens, skip_special_tokens=True))
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    return out
