"""Packed micro-batches: the layout (rows, restarting positions, no cross-example targets) and
the same loss as padded rows, on the real SmolLM2-135M and through the whole trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from symkd.students.batching import collate, pack_rows
from symkd.pipelines.commonsense.comet import from_triples
from symkd.students.data import IGNORE_INDEX, Tokenized, tokenize
from symkd.students.train import TrainConfig, train
from tests.test_students_train import TRIPLES


def test_pack_rows_first_fit_decreasing_within_capacity() -> None:
    lengths = [5, 9, 3, 7, 2, 12, 4]
    rows = pack_rows(lengths, 12)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 12 for r in rows)
    assert len(rows) == 4  # 42 tokens: 12 | 9+3 | 7+5 | 4+2 (first fit, longest first)
    assert pack_rows([20, 3], 8) == [[0], [1]]  # longer than a row: a row of its own


def test_packed_layout_restarts_positions_and_never_targets_a_first_token() -> None:
    items = [Tokenized([1, 2, 3], [IGNORE_INDEX, 2, 3]), Tokenized([4, 5], [4, 5], negative=True), Tokenized([6, 7, 8, 9], [-100, -100, 8, 9])]
    batch = collate(items, pad_id=0, pack=6)
    assert batch["input_ids"].tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]
    assert batch["sequence"].tolist() == [[2, 2, 2, 2, 1, 1], [0, 0, 0, -1, -1, -1]]
    # token 4 starts an example: nothing predicts it (the unpacked shift never does either)
    assert batch["labels"].tolist() == [[-100, -100, 8, 9, -100, 5], [-100, 2, 3, -100, -100, -100]]
    assert batch["negative"].tolist() == [False, True, False] and "attention_mask" not in batch
    padded = collate(items, pad_id=0)
    assert padded["attention_mask"].sum().item() == 9 and "position_ids" not in padded


@pytest.mark.parametrize(("attention", "device"), [("sdpa", "cpu"), ("eager", "cpu"), ("sdpa", "cuda")])
def test_packed_loss_equals_padded_loss_on_smollm2(attention: str, device: str) -> None:
    """The embedded 135M model, fp32: the same summed CE (and REDI terms) packed or padded; without
    restarting positions the packed loss is far off (attention crosses examples)."""
    import torch

    from symkd.students.modeling import load_causal_lm
    from symkd.students.steps import loss_sums

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    loaded = load_causal_lm("smollm2", device=torch.device(device), dtype=torch.float32, train=False)
    model, tok = loaded.model, loaded.tokenizer
    model.config._attn_implementation = attention
    items = [tokenize(e, tok) for e in from_triples(TRIPLES[:8]).examples]
    items = [Tokenized(t.input_ids, t.labels, negative=i % 3 == 0) for i, t in enumerate(items)]
    padded, packed = collate(items, tok.pad_token_id), collate(items, tok.pad_token_id, pack=64)
    padded, packed = ({k: v.to(device) for k, v in b.items()} for b in (padded, packed))
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    with torch.no_grad():
        ce_padded, _, n_padded = loss_sums(model, None, None, padded, True)
        ce_packed, _, n_packed = loss_sums(model, None, None, packed, True)
        redi_padded = loss_sums(model, None, None, padded, True, redi_alpha=0.8)
        redi_packed = loss_sums(model, None, None, packed, True, redi_alpha=0.8)
        crossing = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1], device=device).expand_as(packed["input_ids"]))
        ce_crossing, _, _ = loss_sums(model, None, None, crossing, True)
    assert n_padded.item() == n_packed.item() > 0
    assert ce_packed.item() == pytest.approx(ce_padded.item(), rel=1e-4)
    assert redi_packed[0].item() == pytest.approx(redi_padded[0].item(), rel=1e-4)
    assert torch.allclose(redi_packed[2], redi_padded[2], rtol=1e-4)
    assert abs(ce_crossing.item() - ce_padded.item()) > 0.05 * ce_padded.item()


def test_packed_and_padded_training_take_the_same_steps(tmp_path: Path, tiny_lm: Path) -> None:
    data = from_triples(TRIPLES)
    runs = {}
    for packing in (True, False):
        config = TrainConfig(out=tmp_path / f"p{packing}", base_model=str(tiny_lm), max_steps=4, batch_size=6, lr=3e-3,
                             eval_fraction=0.2, device="cpu", precision="fp32", packing=packing)  # fmt: skip
        runs[packing] = train(data, config, progress=False)
    for a, b in zip(runs[True]["history"], runs[False]["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    assert runs[True]["final"]["eval_loss"] == pytest.approx(runs[False]["final"]["eval_loss"], rel=1e-3)
    assert runs[True]["throughput"]["tokens"] == runs[False]["throughput"]["tokens"]


@pytest.mark.parametrize("packing", [True, False])
def test_widths_rounded_to_a_multiple_take_the_same_steps(tmp_path: Path, tiny_lm: Path, monkeypatch, packing: bool) -> None:
    """``pad_multiple`` (fewer distinct shapes: CPU memory stays flat) only adds pad columns: same losses."""
    import symkd.students.loop as loop

    widths: list[int] = []

    def recorded(*args, **kwargs):
        batch = collate(*args, **kwargs)
        widths.append(batch["input_ids"].shape[1])
        return batch

    monkeypatch.setattr(loop, "collate", recorded)
    runs = {}
    for multiple in (1, None):  # None: the CPU default, 64
        widths.clear()
        config = TrainConfig(out=tmp_path / f"m{multiple}", base_model=str(tiny_lm), max_steps=4, batch_size=6, lr=3e-3,
                             eval_fraction=0.2, device="cpu", precision="fp32", packing=packing, pad_multiple=multiple)  # fmt: skip
        runs[multiple] = train(from_triples(TRIPLES), config, progress=False), sorted(set(widths))
    (plain, plain_widths), (rounded, rounded_widths) = runs[1], runs[None]
    assert rounded_widths == [64] and len(plain_widths) > 1 and max(plain_widths) < 64
    for a, b in zip(plain["history"], rounded["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)
    assert plain["final"]["eval_loss"] == pytest.approx(rounded["final"]["eval_loss"], rel=1e-3)
    assert plain["throughput"]["tokens"] == rounded["throughput"]["tokens"]  # pad columns are not counted as seen
    for run in (plain, rounded):  # every step says what it trained on and what it took: a long run's speed over time
        assert sum(h["tokens"] for h in run["history"]) == run["throughput"]["tokens"]
        assert all(h["seconds"] > 0 and h["rss_mb"] > 0 and h["trimmed"] in (True, False) for h in run["history"])


def test_cpu_training_uses_eager_attention_only_for_short_rows_and_gpus_always_sdpa() -> None:
    """bench/attention_widths.py: on a CPU eager wins only for short packed rows (<= 160 tokens) and
    while its kept scores fit the byte cap; from 192 tokens, for any number of rows, sdpa trains faster."""
    import torch
    from transformers import LlamaConfig

    from symkd.students.modeling import training_attention

    smollm2 = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert training_attention(cpu, smollm2, 8, 128) == "eager"
    assert [training_attention(cpu, smollm2, rows, 192) for rows in (1, 4, 8)] == ["sdpa"] * 3
    assert training_attention(cpu, smollm2, 8, 384) == "sdpa"  # the width that slowed the whole-corpus run
    assert training_attention(cpu, smollm2, 256, 128) == "sdpa"  # 6.8 GB of kept scores: over the cap
    assert training_attention(cuda, smollm2, 8, 64) == "sdpa"
