"""A student's model card says how to use it, by the kind of data it was trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from symkd.students.card import write_card


def _summary(kind: str | None) -> dict:
    source = {"kind": kind, "db": "run.db"} if kind else {"db": "run.db"}
    return {"config": {"base_model": "smollm2", "lora": False, "lora_r": 16, "max_length": 512, "batch_size": 8,
                       "grad_accum": 1, "lr": 1e-4},
            "data": {"source": source, "train_examples": 10, "eval_examples": 0, "too_long": 0,
                     "example_prompt": "PersonX eats as a result, PersonX feels [GEN]", "example_completion": " full"},
            "final": {"train_loss": 1.0}, "steps": 2, "epochs": 1.0, "hardware": {"description": "cpu"},
            "throughput": {"tokens_per_s": 100.0}, "parameters": {"trainable": 1, "total": 1}}  # fmt: skip


@pytest.mark.parametrize("kind,tag,says,never", [
    ("agent-trajectories", "agent", "symkd agent eval --model", "[GEN]"),
    ("commonsense", "commonsense", "symkd eval commonsense", "final_answer"),
    ("chat", "chat", "symkd eval gsm8k --mode cot", "[GEN]"),
    (None, "commonsense", "symkd eval commonsense", "final_answer"),
])  # fmt: skip
def test_the_card_matches_the_training_data(tmp_path: Path, kind, tag, says, never):
    out = tmp_path / "student"
    out.mkdir()
    write_card(out, _summary(kind))
    card = (out / "README.md").read_text()
    assert f"tags: [symkd, knowledge-distillation, {tag}]" in card and says in card and never not in card


def test_a_file_of_chat_conversations_is_chat_data(tmp_path: Path):
    import json

    from symkd.students.data import load_data

    path = tmp_path / "cot.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}) + "\n")
    assert load_data(path).source["kind"] == "chat"
