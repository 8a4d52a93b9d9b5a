"""The training exports as TRL reads them: 2 real ``SFTTrainer`` steps on each form.

``symkd export --format chat-jsonl|prompt-completion`` (commonsense triples) and ``symkd agent
export --format chat|prompt-completion`` (trajectories) are loaded with ``datasets`` and trained
on by TRL's ``SFTTrainer`` with a tiny randomly initialised Llama (built here from a config) and
the SmolLM2 tokenizer. For the prompt-completion form the labels TRL builds from its
``completion_mask`` must cover exactly the assistant text (and its end-of-turn token); every
example carries symkd's own system turn, so SmolLM2's default system prompt never appears.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.procs import run_cli
from tests.test_graphs import make_kg_db

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")

IGNORE = -100
END = "<|im_end|>\n"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"


@pytest.fixture(scope="module")
def tok():
    from symkd.students.modeling import load_tokenizer

    return load_tokenizer("smollm2")


def _tiny_llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    return LlamaForCausalLM(config)


def _train(tmp_path, data, tok):
    """Two SFTTrainer steps on the JSONL file ``data``; returns the trainer and the loaded dataset."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    ds = datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(tmp_path / "hf-cache"))
    model = _tiny_llama(tok)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
                     logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, max_length=4096,
                     disable_tqdm=True, seed=0)  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.train()
    assert result.global_step == 2 and math.isfinite(result.training_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the steps changed the weights
    return trainer, ds


def _split(tok, input_ids, labels) -> tuple[str, str]:
    """(the text trained on, the masked text) of one tokenized example."""
    trained = [t for t, lab in zip(input_ids, labels) if lab != IGNORE]
    masked = [t for t, lab in zip(input_ids, labels) if lab == IGNORE]
    return tok.decode(trained), tok.decode(masked)


def _check_completion_only(trainer, ds, tok) -> list[str]:
    """Each example: trained on its completion's text exactly, masked on the rendered prompt exactly."""
    prepared = trainer.train_dataset
    assert len(prepared) == len(ds)
    trained_texts = []
    for ex, row in zip(prepared, ds):
        trained, masked = _split(tok, ex["input_ids"], ex["labels"])
        assert [m["role"] for m in row["completion"]] == ["assistant"]
        assert trained == row["completion"][0]["content"] + END
        assert masked == tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        trained_texts.append(trained)
    batch = next(iter(trainer.get_train_dataloader()))  # the collated batch keeps the mask (padding is -100)
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        assert _split(tok, ids, labels)[0] in trained_texts
    return trained_texts


def _check_system_turn(rows, system: str) -> None:
    for row in rows:
        turns = row.get("messages") or row["prompt"]
        assert turns[0] == {"role": "system", "content": system}
        assert sum(m["role"] == "system" for m in turns) == 1


# ---- commonsense triples ------------------------------------------------------------------


@pytest.fixture(scope="module")
def kg(tmp_path_factory):
    return make_kg_db(tmp_path_factory.mktemp("kg") / "kg.db")


def _export(capsys, kg, out, fmt):
    code, _, err = run_cli(capsys, "export", "--db", str(kg), "--format", fmt, "--out", str(out), "--critic", "rules", "-q")
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_commonsense_chat_jsonl_trains_in_trl(capsys, tmp_path, kg, tok):
    from symkd.pipelines.commonsense.datasets import SYSTEM_PROMPT

    rows = _export(capsys, kg, tmp_path / "chat.jsonl", "chat-jsonl")
    _check_system_turn(rows, SYSTEM_PROMPT)
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert {"score_rules", "decision_rules", "score_classifier", "id", "run_id"} <= set(rows[0])
    trainer, ds = _train(tmp_path, tmp_path / "chat.jsonl", tok)
    for ex, row in zip(trainer.train_dataset, ds):
        text = tok.decode(ex["input_ids"])
        assert text == tok.apply_chat_template(row["messages"], tokenize=False) and DEFAULT_SYSTEM not in text
        assert ex["labels"] == ex["input_ids"]  # the language-modelling form: TRL trains on every token


def test_commonsense_prompt_completion_trains_on_the_tail_only(capsys, tmp_path, kg, tok):
    from symkd.pipelines.commonsense.datasets import SYSTEM_PROMPT

    rows = _export(capsys, kg, tmp_path / "pc.jsonl", "prompt-completion")
    chat = _export(capsys, kg, tmp_path / "chat.jsonl", "chat-jsonl")
    _check_system_turn(rows, SYSTEM_PROMPT)
    assert [r["prompt"] + r["completion"] for r in rows] == [c["messages"] for c in chat]  # the same examples
    trainer, ds = _train(tmp_path, tmp_path / "pc.jsonl", tok)
    trained = _check_completion_only(trainer, ds, tok)
    assert "tired" + END in trained and not any(SYSTEM_PROMPT in t or "[GEN]" in t for t in trained)


def _symkd_tokens(path, tok):
    from symkd.students.data import load_data, tokenize

    data = load_data(path)
    return data, [(t.input_ids, t.labels) for t in (tokenize(e, tok) for e in data.examples)]


def test_symkd_train_reads_the_prompt_completion_export_as_the_chat_export(capsys, tmp_path, kg, tok):
    """``symkd train --data`` on either export of the same triples: the same token ids and loss mask."""
    _export(capsys, kg, tmp_path / "pc.jsonl", "prompt-completion")
    _export(capsys, kg, tmp_path / "chat.jsonl", "chat-jsonl")
    pc, pc_tokens = _symkd_tokens(tmp_path / "pc.jsonl", tok)
    chat, chat_tokens = _symkd_tokens(tmp_path / "chat.jsonl", tok)
    assert len(pc) == len(chat) > 0 and pc.source["kind"] == chat.source["kind"] == "chat"
    assert pc_tokens == chat_tokens
    trained = [tok.decode([t for t in labels if t != IGNORE]) for _, labels in pc_tokens]
    assert "tired" + END in trained


def test_unknown_export_format_is_one_line(capsys, tmp_path, kg):
    code, _, err = run_cli(capsys, "export", "--db", str(kg), "--format", "prompt", "--out", str(tmp_path / "x.jsonl"))
    assert code == 2 and "prompt-completion" in err and err.strip().count("\n") == 0


# ---- agent trajectories -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    """A run DB with two gold-rationale trajectories (two and three assistant turns)."""
    from symkd.cli import main

    folder = tmp_path_factory.mktemp("agents")
    tasks = folder / "train.jsonl"
    tasks.write_text(
        json.dumps({"question": "Ann has 3 bags of 4 pens. How many pens?", "answer": "She has 3*4=<<3*4=12>>12 pens.\n#### 12"})
        + "\n"
        + json.dumps({"question": "Bo has 5 apples, buys 2 more and eats 3. How many are left?",
                      "answer": "He has 5+2=<<5+2=7>>7.\nThen 7-3=<<7-3=4>>4 are left.\n#### 4"})  # fmt: skip
        + "\n"
    )
    db = folder / "run.db"
    assert main(["agent", "generate", "--source", "gold-rationales", "--data", str(tasks), "--db", str(db), "-q"]) is None
    return db


def _agent_export(capsys, db, out, fmt):
    code, _, err = run_cli(capsys, "agent", "export", "--db", str(db), "--out", str(out), "--format", fmt)
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_agent_chat_export_trains_in_trl(capsys, tmp_path, trajectories, tok):
    rows = _agent_export(capsys, trajectories, tmp_path / "chat.jsonl", "chat")
    assert len(rows) == 2 and all(r["messages"][0]["role"] == "system" for r in rows)
    trainer, ds = _train(tmp_path, tmp_path / "chat.jsonl", tok)
    for ex in trainer.train_dataset:
        assert DEFAULT_SYSTEM not in tok.decode(ex["input_ids"])


def test_agent_prompt_completion_trains_on_assistant_turns_only(capsys, tmp_path, trajectories, tok):
    chat = _agent_export(capsys, trajectories, tmp_path / "chat.jsonl", "chat")
    rows = _agent_export(capsys, trajectories, tmp_path / "pc.jsonl", "prompt-completion")
    assistant = [m["content"] + END for c in chat for m in c["messages"] if m["role"] == "assistant"]
    assert len(rows) == len(assistant) >= 4  # one example per assistant turn
    for row in rows:  # the prompt is the conversation before the turn, exactly as in the chat export
        whole = next(c["messages"] for c in chat if c["id"] == row["id"])
        assert row["prompt"] + row["completion"] == whole[: len(row["prompt"]) + 1]
        assert row["prompt"][0]["role"] == "system" and row["completion"][0]["role"] == "assistant"
    trainer, ds = _train(tmp_path, tmp_path / "pc.jsonl", tok)
    trained = _check_completion_only(trainer, ds, tok)
    assert sorted(trained) == sorted(assistant)  # every assistant turn trained once, nothing else
    observations = [m["content"] for c in chat for m in c["messages"][2:] if m["role"] == "user"]
    assert observations and not any(obs in t for obs in observations for t in trained)


def test_symkd_train_masks_the_agent_prompt_completion_export_as_trl_does(capsys, tmp_path, trajectories, tok):
    """Each per-turn example: symkd's ids and labels are TRL's (trained on that assistant turn only)."""
    _agent_export(capsys, trajectories, tmp_path / "pc.jsonl", "prompt-completion")
    _, ours = _symkd_tokens(tmp_path / "pc.jsonl", tok)
    trainer, ds = _train(tmp_path, tmp_path / "pc.jsonl", tok)
    theirs = [(ex["input_ids"], ex["labels"]) for ex in trainer.train_dataset]
    assert len(ours) == len(theirs) >= 4
    for (ids, labels), (trl_ids, trl_labels), row in zip(ours, theirs, ds):
        assert ids == trl_ids and labels == trl_labels
        assert tok.decode([t for t in labels if t != IGNORE]) == row["completion"][0]["content"] + END


def test_agent_export_unknown_format_is_one_line(capsys, tmp_path, trajectories):
    out = tmp_path / "x.jsonl"
    code, _, err = run_cli(capsys, "agent", "export", "--db", str(trajectories), "--out", str(out), "--format", "sharegpt")
    assert code == 2 and "chat, prompt-completion" in err and err.strip().count("\n") == 0 and not out.exists()
