"""Students that load anywhere: no machine paths in the folder, a portable LoRA base, a real card.

The folders are trained for real (tiny random Llama; the embedded SmolLM2 in the slow test) into
``a/b/s1`` with the parents missing, then moved or loaded the way a user elsewhere would.
"""

from __future__ import annotations

import json
import shutil
import site
import sys
from pathlib import Path

import pytest

from symkd.pipelines.commonsense.comet import from_triples
from symkd.students.modeling import load_causal_lm, resolve_source
from tests.fixtures.tiny_lm import make_tiny_lm
from tests.fixtures.spies import from_pretrained_options
from tests.procs import run_cli
from tests.test_students_train import TRIPLES

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPT = "PersonX goes jogging as a result, PersonX feels [GEN]"


def machine_paths(folder: Path, *roots: Path) -> list[str]:
    """``file: path`` for each file of ``folder`` (any kind, read as bytes) that holds one of the
    roots or this Python's installation (its venv, prefix, site-packages)."""
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    needles = {str(r) for r in roots} | {str(Path(r).resolve()) for r in roots} | {p for p in python if len(p) > 4}
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {n}" for n in sorted(needles) if n.encode() in data]
    return found


def front_matter(readme: Path) -> dict:
    from huggingface_hub import metadata_load

    return metadata_load(readme)


def logits_and_greedy(model, tokenizer) -> tuple:
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits.float()
        tokens = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return logits, tokens[0, ids.shape[1]:].tolist()


def assert_same_model(a, b, tokenizer) -> None:
    import torch

    (la, ga), (lb, gb) = logits_and_greedy(a, tokenizer), logits_and_greedy(b, tokenizer)
    # a merged LoRA (W + BA in float32) sums in another order than the adapter: up to 5.3e-4 apart
    # on an Intel Xeon, so the bound scales with the logits (1e-4 of the largest)
    scale = max(1.0, float(lb.abs().max()))
    assert torch.allclose(la, lb, atol=1e-4 * scale, rtol=1e-4), (float((la - lb).abs().max()), scale)
    assert ga == gb


def test_a_lora_student_on_a_local_base_moves_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM

    from symkd.api import train_student

    base = make_tiny_lm(tmp_path / "models" / "base")
    out = tmp_path / "runs" / "a" / "b" / "s1"  # parents missing: the API creates them
    summary = train_student(from_triples(TRIPLES), out, base_model=str(base), lora=True, lora_r=4, max_steps=3,
                            batch_size=4, lr=3e-3, eval_fraction=0.25, device="cpu", progress=False)  # fmt: skip
    assert machine_paths(out, tmp_path) == []
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "../../../../models/base"

    meta = front_matter(out / "README.md")
    assert "base_model" not in meta  # a local base has no Hub id; the card names it relatively
    assert meta["library_name"] == "transformers" and {"symkd", "lora", "commonsense"} <= set(meta["tags"])
    assert meta["symkd"]["base"] == "../../../../models/base"
    assert meta["symkd"]["data"]["train_examples"] == summary.data["train_examples"] > 0
    assert meta["symkd"]["data"]["eval_examples"] == summary.data["eval_examples"] > 0
    held = meta["model-index"][0]["results"][0]["metrics"][0]
    assert held["value"] == pytest.approx(summary.final["eval_loss"])
    assert front_matter(out / "adapter" / "README.md")["library_name"] == "peft"
    assert "More Information Needed" not in (out / "adapter" / "README.md").read_text()

    moved = tmp_path / "elsewhere"  # the same layout on another machine: the old paths are gone
    for part in ("models", "runs"):
        shutil.move(tmp_path / part, moved / part)
    student = moved / "runs" / "a" / "b" / "s1"
    ours = load_causal_lm(str(student), train=False)
    monkeypatch.chdir(student)  # peft reads the relative base from the working folder
    assert_same_model(AutoPeftModelForCausalLM.from_pretrained("adapter"), ours.model, ours.tokenizer)
    resolved = student / adapter["base_model_name_or_path"]
    by_hand = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolved), student / "adapter")
    assert_same_model(by_hand, ours.model, ours.tokenizer)
    assert_same_model(load_causal_lm(str(student / "adapter"), train=False).model, ours.model, ours.tokenizer)


def test_symkd_train_creates_the_out_folders_parents(tmp_path: Path, tiny_lm: Path, capsys) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"head": h, "relation": r, "tail": t}) + "\n" for h, r, t in TRIPLES))
    out = tmp_path / "students" / "deeper" / "s1"
    code, _, err = run_cli(capsys, "train", "--data", str(data), "--base-model", str(tiny_lm), "--out", str(out),
                           "--max-steps", "1", "--batch-size", "4", "--device", "cpu", "-q")  # fmt: skip
    assert code == 0, err
    assert (out / "training.json").is_file() and machine_paths(out, tmp_path, tiny_lm) == []
    under_a_file = tmp_path / "file"
    under_a_file.write_text("x")
    code, _, err = run_cli(capsys, "train", "--data", str(data), "--base-model", str(tiny_lm),
                           "--out", str(under_a_file / "s1"), "--max-steps", "1", "-q")  # fmt: skip
    assert code == 2 and "cannot create the folder" in err and len(err.strip().splitlines()) == 1


def test_the_embedded_hub_id_loads_offline_unless_the_hub_copy_is_cached(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    from symkd.teachers.embedded import locate

    gguf = locate("smollm2")
    assert resolve_source(SMOLLM2) == (str(gguf.parent), {"gguf_file": gguf.name})
    assert resolve_source(SMOLLM2.lower()) == (str(gguf.parent), {"gguf_file": gguf.name})
    snapshot = tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_source(SMOLLM2) == (SMOLLM2, {})  # the real weights, as the user has them


@pytest.mark.slow
def test_an_embedded_lora_student_names_the_hub_id_and_loads_offline(tmp_path: Path, monkeypatch) -> None:
    from peft import PeftModel

    from symkd.students.train import TrainConfig, train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "a" / "b" / "s1"
    config = TrainConfig(out=out, base_model="smollm2", lora=True, lora_r=2, max_steps=1, batch_size=2,
                         eval_fraction=0.0, device="cpu", precision="fp32")  # fmt: skip
    summary = train(from_triples(TRIPLES[:4]), config, progress=False)
    assert machine_paths(out, tmp_path) == []
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == SMOLLM2
    meta = front_matter(out / "README.md")
    assert meta["base_model"] == SMOLLM2 and meta["license"] == "apache-2.0" and meta["library_name"] == "transformers"
    assert meta["symkd"]["data"]["train_examples"] == summary["data"]["train_examples"] == 4
    adapter_meta = front_matter(out / "adapter" / "README.md")
    assert adapter_meta["base_model"] == SMOLLM2 and f"base_model:adapter:{SMOLLM2}" in adapter_meta["tags"]

    ours = load_causal_lm(str(out), train=False)
    base = load_causal_lm(SMOLLM2, train=False).model  # no network: the embedded GGUF stands in
    assert_same_model(PeftModel.from_pretrained(base, out / "adapter"), ours.model, ours.tokenizer)


def test_portable_names_are_hub_ids_or_relative_paths(tmp_path: Path) -> None:
    from symkd.students.modeling import portable_name
    from symkd.teachers.embedded import locate

    student = tmp_path / "runs" / "s1"
    snapshot = tmp_path / "hub" / "models--org--tiny-model" / "snapshots" / "abc"
    local = tmp_path / "models" / "base"
    for folder in (student, snapshot, local):
        folder.mkdir(parents=True)
    assert portable_name("smollm2", student) == portable_name(str(locate("smollm2")), student) == SMOLLM2
    assert portable_name(str(snapshot), student) == "org/tiny-model"
    assert portable_name("someone/their-model", student) == "someone/their-model"  # a Hub id, as given
    assert portable_name(str(local), student) == "../../models/base"
    assert portable_name(str(student / "inner"), student) == "./inner"
    assert portable_name("/nonexistent-root-folder/model", student) == "model"  # shares only / with the student


def test_a_gguf_base_is_asked_for_as_plain_trainable_weights(monkeypatch):
    """transformers 5.25 keeps a GGUF file's weights packed in their quantized blocks when it can
    fetch a matmul kernel from the Hub (online; for qwen35, qwen35moe and lfm2 files there), and
    packed weights cannot be trained. That path cannot run offline or for the embedded Llama, so
    this checks the request the loader makes, on a real load of the embedded model."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "GgufConfig"):
        pytest.skip("this transformers has no GgufConfig: it unpacks every GGUF file")
    import torch

    seen = from_pretrained_options(monkeypatch)
    model = load_causal_lm("smollm2", dtype=torch.float32).model
    assert seen["gguf_file"].endswith(".gguf") and seen["quantization_config"].dequantize is True
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 30 * 7 + 1  # q k v o gate up down per layer, and the head
    assert all(type(m) is torch.nn.Linear and m.weight.requires_grad for m in linears)
    assert all(p.dtype == torch.float32 for p in model.parameters())
