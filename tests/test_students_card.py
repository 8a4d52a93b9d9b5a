"""A student's model card says how to use it, by the kind of data it was trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import metadata_load

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
    ("commonsense", "commonsense", "symkd commonsense eval", "final_answer"),
    ("chat", "chat", "symkd agent eval-gsm8k --mode cot", "[GEN]"),
    ("db", "commonsense", "symkd commonsense eval", "final_answer"),  # the commonsense pipeline's data kinds
    ("tsv", "commonsense", "symkd commonsense eval", "final_answer"),
    (None, "text-generation", "Prompt and completion as in the training data", "symkd commonsense eval"),  # no pipeline's
])  # fmt: skip
def test_the_card_matches_the_training_data(tmp_path: Path, kind, tag, says, never):
    out = tmp_path / "student"
    out.mkdir()
    write_card(out, _summary(kind))
    card = (out / "README.md").read_text()
    assert metadata_load(out / "README.md")["tags"] == ["symkd", "knowledge-distillation", tag]
    assert says in card and never not in card


def test_a_file_of_chat_conversations_is_chat_data(tmp_path: Path):
    from symkd.students.data import load_data

    path = tmp_path / "cot.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}) + "\n")
    assert load_data(path).source["kind"] == "chat"


def test_the_card_is_hub_metadata_with_counts_and_no_machine_paths(tmp_path: Path):
    """Paths the summary holds (the folder, a local base, the data file) leave no trace in the
    folder: the base is named relative to it, the rest by name."""
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    (base / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    out = tmp_path / "students" / "s1"
    out.mkdir(parents=True)
    summary = _summary("chat")
    summary["config"].update(base_model=str(base), out=str(out), teacher_model=str(base))
    summary["data"]["source"].update(path=str(tmp_path / "data" / "cot.jsonl"), db=str(tmp_path / "run.db"))
    summary["final"]["eval_loss"] = 0.5
    write_card(out, summary)
    for name in ("README.md", "training.json"):
        assert str(tmp_path) not in (out / name).read_text(), name
    meta = metadata_load(out / "README.md")
    assert "base_model" not in meta and meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert meta["symkd"]["base"] == "../../models/base"
    assert meta["symkd"]["data"]["source"]["path"] == "cot.jsonl" and meta["symkd"]["data"]["train_examples"] == 10
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.5
    record = json.loads((out / "training.json").read_text())
    assert record["config"]["out"] == "s1" and record["config"]["teacher_model"] == "../../models/base"


def test_the_embedded_base_is_named_by_its_hub_id(tmp_path: Path):
    write_card(tmp_path, _summary(None))
    meta = metadata_load(tmp_path / "README.md")
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert meta["symkd"]["base_gguf"].endswith(".gguf") and "model-index" not in meta


def test_an_evaluation_is_recorded_in_the_card_and_its_hub_metadata(tmp_path: Path):
    """record_evaluation adds (or replaces) an entry in training.json and re-renders the card:
    an evaluation table, ``model-index`` results that parse, and no path of this machine."""
    from symkd.students.card import record_evaluation

    out = tmp_path / "student"
    out.mkdir()
    summary = _summary("chat")
    summary["final"]["eval_loss"] = 0.5
    write_card(out, summary)
    data = tmp_path / "data" / "test.jsonl"
    record_evaluation(out, "gsm8k-cot", {"accuracy": 0.25, "items": 8, "ci95": [0.1, 0.5], "model": str(out)},
                      dataset=str(data), split="test", details={"data": str(data), "max_tokens": 64})  # fmt: skip
    record_evaluation(out, "atomic2020", {"bleu1": 0.1, "rougeL": 0.2}, dataset="dev.tsv", split="dev")
    record_evaluation(out, "gsm8k-cot", {"accuracy": 0.375, "items": 8}, dataset=str(data), split="test")  # replaces
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and "| gsm8k-cot | test.jsonl | test | accuracy | 0.375 |" in card
    assert "| atomic2020 | dev.tsv | dev | rougeL | 0.2 |" in card and "0.25" not in card
    for name in ("README.md", "training.json"):
        assert str(tmp_path) not in (out / name).read_text(), name
    meta = metadata_load(out / "README.md")  # the YAML front matter parses
    assert meta["tags"][:2] == ["symkd", "knowledge-distillation"] and meta["symkd"]["data"]["train_examples"] == 10
    results = meta["model-index"][0]["results"]
    values = {(r["dataset"]["type"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert values[("gsm8k-cot", "accuracy")] == 0.375 and values[("atomic2020", "bleu1")] == 0.1
    assert 0.5 in values.values()  # the held-out loss stays
    record = json.loads((out / "training.json").read_text())
    assert list(record["evaluations"]) == ["gsm8k-cot", "atomic2020"]
    assert record["evaluations"]["gsm8k-cot"]["metrics"] == {"accuracy": 0.375, "items": 8}
    assert record["evaluations"]["gsm8k-cot"]["dataset"] == "test.jsonl"
    assert not list(out.glob(".*.tmp"))  # the temporary files were renamed into place


def test_concurrent_evaluations_both_land(tmp_path: Path):
    from concurrent.futures import ThreadPoolExecutor

    from symkd.students.card import record_evaluation

    write_card(tmp_path, _summary("chat"))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: record_evaluation(tmp_path, f"e{i}", {"accuracy": i / 10}), range(8)))
    assert sorted(json.loads((tmp_path / "training.json").read_text())["evaluations"]) == [f"e{i}" for i in range(8)]
    assert len(metadata_load(tmp_path / "README.md")["model-index"][0]["results"]) == 8


def test_only_a_student_folder_records_an_evaluation(tmp_path: Path):
    from symkd.errors import UserError
    from symkd.students.card import record_evaluation, record_if_student

    assert record_if_student("smollm2", "gsm8k", {"accuracy": 0.5}) is None
    assert record_if_student(None, "gsm8k", {"accuracy": 0.5}) is None
    assert record_if_student(f"hf:{tmp_path}", "gsm8k", {"accuracy": 0.5}) is None and not list(tmp_path.iterdir())
    with pytest.raises(UserError, match="no training.json"):
        record_evaluation(tmp_path, "gsm8k", {"accuracy": 0.5})
    write_card(tmp_path, _summary("chat"))
    with pytest.raises(UserError, match="numeric metric"):
        record_evaluation(tmp_path, "gsm8k", {"model": "x"})
    assert record_if_student(f"hf:{tmp_path}", "gsm8k", {"accuracy": 0.5})["metrics"] == {"accuracy": 0.5}
    assert "| gsm8k | - | - | accuracy | 0.5 |" in (tmp_path / "README.md").read_text()
