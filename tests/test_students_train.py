"""symkd train: data formatting and masking, batches, the loop, checkpoints and resume, LoRA, KD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symkd.errors import UserError
from symkd.students import train as train_module
from symkd.students.batching import epoch_batches
from symkd.pipelines.commonsense.comet import comet_prompt, from_triples
from symkd.students.data import IGNORE_INDEX, Example, TrainingData, load_data, tokenize
from symkd.students.modeling import load_tokenizer
from symkd.students.train import TrainConfig, train
from tests.fixtures.tiny_lm import make_tiny_lm

TRIPLES = [
    ("PersonX goes jogging", "xReact", "tired"),
    ("PersonX goes jogging", "xNeed", "to put on running shoes"),
    ("PersonX bakes a cake", "xIntent", "to celebrate a birthday"),
    ("PersonX bakes a cake", "oReact", "happy"),
    ("PersonX loses PersonX's keys", "xReact", "worried"),
    ("PersonX loses PersonX's keys", "xWant", "to find the keys"),
    ("knife", "ObjectUse", "cut bread"),
    ("knife", "AtLocation", "kitchen drawer"),
] * 3


def tiny_config(out: Path, base: Path, **kw) -> TrainConfig:
    options = {"max_steps": 6, "batch_size": 4, "lr": 3e-3, "eval_fraction": 0.0, "device": "cpu", **kw}
    return TrainConfig(out=out, base_model=str(base), **options)


def test_comet_format_and_loss_only_on_the_tail() -> None:
    tok = load_tokenizer("smollm2")
    example = from_triples([("PersonX goes jogging", "xReact", "tired")]).examples[0]
    assert example.prompt == "PersonX goes jogging as a result, PersonX feels [GEN]"
    assert example.completion == " tired"
    t = tokenize(example, tok, 64)
    prompt_len = len(tok(example.prompt)["input_ids"])
    assert t.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    learned = [x for x in t.labels if x != IGNORE_INDEX]
    assert tok.decode(learned[:-1]) == " tired" and learned[-1] == tok.eos_token_id
    assert tokenize(example, tok, 5) is None  # too long: left out, not cut
    with pytest.raises(UserError, match="unknown relation"):
        comet_prompt("PersonX runs", "xFeels")


def test_chat_jsonl_learns_the_last_assistant_message(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
            {"prompt": "Capital of France:", "completion": " Paris"},
            {"head": "knife", "relation": "ObjectUse", "tail": "cut bread"}]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_data(path)
    assert len(data) == 3 and data.source["kind"] == "jsonl"
    tok = load_tokenizer("smollm2")
    t = tokenize(data.examples[0], tok, 128)
    learned = tok.decode([x for x in t.labels if x != IGNORE_INDEX])
    assert learned.startswith("4") and "2+2" not in learned


SYSTEM = {"role": "system", "content": "Answer briefly."}
USER = {"role": "user", "content": "2+2?"}
ANSWER = {"role": "assistant", "content": "4"}


def test_trl_prompt_completion_rows_equal_the_chat_rows(tmp_path: Path) -> None:
    """TRL's conversational prompt-completion row and the chat row of the same turns: the same
    token ids and loss mask (the prompt rendered with the chat template + generation prompt)."""
    tok = load_tokenizer("smollm2")
    chat, pc = tmp_path / "chat.jsonl", tmp_path / "pc.jsonl"
    chat.write_text(json.dumps({"messages": [SYSTEM, USER, ANSWER]}) + "\n")
    pc.write_text(json.dumps({"prompt": [SYSTEM, USER], "completion": [ANSWER], "id": "x", "turn": 0}) + "\n")
    a, b = load_data(chat), load_data(pc)
    assert b.source["kind"] == "chat" and a.examples == b.examples
    ta, tb = tokenize(a.examples[0], tok, 128), tokenize(b.examples[0], tok, 128)
    assert ta.input_ids == tb.input_ids and ta.labels == tb.labels
    masked = tok.decode([t for t, lab in zip(tb.input_ids, tb.labels) if lab == IGNORE_INDEX])
    assert masked == tok.apply_chat_template([SYSTEM, USER], add_generation_prompt=True, tokenize=False)
    assert tok.decode([x for x in tb.labels if x != IGNORE_INDEX]) == "4<|im_end|>\n"
    assert train_module.data_digest(a) == train_module.data_digest(b)


def test_a_two_message_completion_trains_on_both_and_what_is_between(tmp_path: Path) -> None:
    tok = load_tokenizer("smollm2")
    obs = {"role": "user", "content": "Observation: 4"}
    done = {"role": "assistant", "content": "final 4"}
    path = tmp_path / "pc.jsonl"
    path.write_text(json.dumps({"prompt": [USER], "completion": [ANSWER, obs, done]}) + "\n")
    data = load_data(path)
    t = tokenize(data.examples[0], tok, 256)
    learned = tok.decode([x for x in t.labels if x != IGNORE_INDEX])
    full = tok.apply_chat_template([USER, ANSWER, obs, done], tokenize=False)
    prompt = tok.apply_chat_template([USER], add_generation_prompt=True, tokenize=False)
    assert learned == full[len(prompt):] and "2+2" not in learned
    assert train_module.data_digest(data) != train_module.data_digest(load_data(_one(tmp_path, [USER, ANSWER, obs, done])))


def _one(tmp_path: Path, messages: list) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"messages": messages}) + "\n")
    return path


def test_plain_prompt_completion_strings_still_train_on_the_completion(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"prompt": "Capital of France:", "completion": " Paris"}) + "\n")
    example = load_data(path).examples[0]
    assert (example.prompt, example.completion, example.messages) == ("Capital of France:", " Paris", None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "x"}', "'prompt' and 'completion' must be strings"),
        ('{"head": "knife", "relation": "UsedFor", "tail": "cut"}', "field 'relation'"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "last message must be the assistant's"),
        ('{"text": "hello"}', "expected 'messages'"),
        ("not json", "invalid JSON"),
        ('{"prompt": [{"role": "user", "content": "hi"}], "completion": "ok"}', "'completion' must be a non-empty list"),
        ('{"prompt": [], "completion": [{"role": "assistant", "content": "ok"}]}', "'prompt' must be a non-empty list"),
        ('{"prompt": [{"role": "user"}], "completion": [{"role": "assistant", "content": "ok"}]}',
         r"prompt\[0\] needs string 'role' and 'content'"),
        ('{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": 3}]}',
         r"completion\[0\] needs string 'role' and 'content'"),
        ('{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "user", "content": "ok"}]}',
         r"completion\[0\] must be the assistant's"),
    ],
)
def test_bad_jsonl_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": " b"}\n' + line + "\n")
    with pytest.raises(UserError, match=message) as info:
        load_data(path)
    assert f"{path}:2" in str(info.value)


def test_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no training examples"):
        load_data(empty)
    with pytest.raises(UserError, match="empty"):
        train(TrainingData([]), TrainConfig(out=tmp_path / "s"))
    with pytest.raises(UserError, match="no such file"):
        load_data(tmp_path / "missing.tsv")


def test_epoch_batches_cover_every_example_once_longest_first() -> None:
    lengths = [(i * 37) % 23 + 1 for i in range(103)]
    batches = epoch_batches(lengths, 8, seed=1, epoch=0)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(103))
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    assert batches == epoch_batches(lengths, 8, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 8, seed=1, epoch=1)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 4  # length-grouped: little padding inside a batch


def test_training_lowers_the_loss_and_saves_a_loadable_model(tmp_path: Path, tiny_lm: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "student"
    summary = train(from_triples(TRIPLES), tiny_config(out, tiny_lm, max_steps=30, eval_fraction=0.2, lr=1e-2), progress=False)
    history = [h["loss"] for h in summary["history"]]
    assert len(history) == 30 and sum(history[-5:]) / 5 < sum(history[:5]) / 5 * 0.8
    assert summary["final"]["eval_loss"] is not None and summary["data"]["eval_examples"] > 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "training.json", "training_curve.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[GEN]" in (out / "README.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).eos_token_id is not None and model.config.vocab_size > 1000
    again = train(from_triples(TRIPLES), tiny_config(out, tiny_lm, max_steps=30, eval_fraction=0.2, lr=1e-2), progress=False)
    assert again["fingerprint"] == summary["fingerprint"]  # finished: nothing retrained
    with pytest.raises(UserError, match="another config"):
        train(from_triples(TRIPLES), tiny_config(out, tiny_lm, max_steps=31), progress=False)


def test_killed_run_resumes_to_the_same_weights(tmp_path: Path, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import load_file

    data = from_triples(TRIPLES)
    straight = tmp_path / "straight"
    train(data, tiny_config(straight, tiny_lm, save_every=2), progress=False)

    resumed = tmp_path / "resumed"
    real_save = train_module.checkpoints.save
    calls = {"n": 0}

    def save_then_die(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        path = real_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # checkpoint at step 4 written, then the process "dies"
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(train_module.checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(data, tiny_config(resumed, tiny_lm, save_every=2), progress=False)
    monkeypatch.setattr(train_module.checkpoints, "save", real_save)
    assert (resumed / "checkpoints" / "step-00000004").is_dir() and not (resumed / "training.json").exists()
    summary = train(data, tiny_config(resumed, tiny_lm, save_every=2), progress=False)
    assert [h["step"] for h in summary["history"]] == [1, 2, 3, 4, 5, 6]
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_trains_adapters_and_saves_merged_weights(tmp_path: Path, tiny_lm: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    summary = train(from_triples(TRIPLES), tiny_config(out, tiny_lm, lora=True, lora_r=4), progress=False)
    assert summary["parameters"]["trainable"] < summary["parameters"]["total"] / 5
    assert (out / "adapter" / "adapter_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft needed
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_white_box_kd_changes_the_update(tmp_path: Path, tiny_lm: Path) -> None:
    """KD must move the weights away from CE-only training (a zero KD term would not: with AdamW
    and clipping, (1-w)·CE alone updates like CE), and the logged KD loss must be positive."""
    from safetensors.torch import load_file

    teacher = make_tiny_lm(tmp_path / "teacher", seed=1)
    data = from_triples(TRIPLES)
    summary = train(data, tiny_config(tmp_path / "kd", tiny_lm, kd_loss="forward_kl", teacher_model=str(teacher)), progress=False)
    train(data, tiny_config(tmp_path / "ce", tiny_lm), progress=False)
    assert summary["steps"] == 6 and summary["config"]["kd_loss"] == "forward_kl"
    assert all(h["kd"] > 0.01 and h["ce"] > 0 for h in summary["history"]) and summary["final"]["kd_loss"] > 0.01
    first = summary["history"][0]
    assert first["loss"] == pytest.approx(0.5 * first["ce"] + 0.5 * first["kd"], abs=1e-4)
    kd_w, ce_w = load_file(tmp_path / "kd" / "model.safetensors"), load_file(tmp_path / "ce" / "model.safetensors")
    assert max(float((kd_w[k] - ce_w[k]).abs().max()) for k in kd_w) > 1e-3
    taid = train(data, tiny_config(tmp_path / "taid", tiny_lm, kd_loss="taid", teacher_model=str(teacher)), progress=False)
    assert taid["steps"] == 6 and taid["final"]["kd_loss"] > 0


def test_kd_with_a_different_tokenizer_fails_before_training(tmp_path: Path, tiny_lm: Path) -> None:
    other = make_tiny_lm(tmp_path / "other", extra_token="<symkd-extra>")
    with pytest.raises(UserError, match="does not share the student's tokenizer"):
        train(from_triples(TRIPLES), tiny_config(tmp_path / "kd", tiny_lm, kd_loss="forward_kl", teacher_model=str(other)),
              progress=False)  # fmt: skip
    assert not (tmp_path / "kd" / "checkpoints").exists()
    with pytest.raises(UserError, match="needs both"):
        train(from_triples(TRIPLES), tiny_config(tmp_path / "kd2", tiny_lm, kd_loss="forward_kl"), progress=False)
    with pytest.raises(UserError, match="unknown KD loss"):
        TrainConfig(out=tmp_path / "x", kd_loss="nosuch")


def test_missing_base_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such model file or folder"):
        train(from_triples(TRIPLES), TrainConfig(out=tmp_path / "s", base_model=str(tmp_path / "nope")), progress=False)
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        train(from_triples(TRIPLES), TrainConfig(out=tmp_path / "s", base_model=str(tmp_path / "empty-model")), progress=False)


def test_examples_too_long_are_refused_unless_allowed_and_always_counted(tmp_path: Path, tiny_lm: Path, capsys) -> None:
    rows = [Example("PersonX " + "runs " * 40 + "[GEN]", " far", group="a"), *from_triples(TRIPLES).examples]
    data = TrainingData(rows, {"kind": "test"})
    with pytest.raises(UserError, match=r"1 of 25 examples \(4.0%\) are longer than --max-length 24 tokens.*--max-dropped-share 0.04"):
        train(data, tiny_config(tmp_path / "s", tiny_lm, max_length=24), progress=False)
    summary = train(data, tiny_config(tmp_path / "s", tiny_lm, max_length=24, max_dropped_share=0.05), progress=False)
    assert summary["data"]["too_long"] == 1 and summary["data"]["train_examples"] == 24
    assert "1 of 25 examples (4.0%) are longer than --max-length 24 tokens (longest 4" in capsys.readouterr().err
    auto = train(data, tiny_config(tmp_path / "auto", tiny_lm), progress=False)  # default: the longest example fits
    assert auto["data"]["too_long"] == 0 and auto["data"]["max_length"] == auto["data"]["longest"] > 40


def test_train_tokens_sets_an_exact_budget(tmp_path: Path, tiny_lm: Path) -> None:
    data = from_triples(TRIPLES)
    one = train(data, tiny_config(tmp_path / "one", tiny_lm, max_steps=1, batch_size=4), progress=False)
    step_tokens = one["throughput"]["tokens"]
    budget = 5 * step_tokens
    summary = train(data, tiny_config(tmp_path / "b", tiny_lm, max_steps=None, train_tokens=budget, batch_size=4), progress=False)
    seen = summary["throughput"]["tokens"]
    assert budget <= seen < budget + 2 * step_tokens and summary["steps"] == summary["total_steps"] >= 4
    with pytest.raises(UserError, match="--max-steps and --train-tokens both set the budget"):
        tiny_config(tmp_path / "c", tiny_lm, train_tokens=100)


def test_step_count_for_a_token_budget_spans_epochs() -> None:
    from types import SimpleNamespace

    from symkd.students.data import Tokenized
    from symkd.students.prepare import Prepared, step_count

    lengths = [3, 5, 7, 11]  # 26 tokens an epoch, 2 batches of 2
    prepared = Prepared([Tokenized([0] * n, [0] * n) for n in lengths], [], None, 11, 0, 11, 0, 0)
    config = SimpleNamespace(max_steps=None, train_tokens=2 * 26 + 1, epochs=1.0, grad_accum=1, seed=0)
    assert step_count(config, prepared, 2, 2) == 5  # two whole epochs, then one batch of the third
    assert step_count(SimpleNamespace(**{**vars(config), "train_tokens": 26}), prepared, 2, 2) == 2
    assert step_count(SimpleNamespace(**{**vars(config), "grad_accum": 2}), prepared, 2, 2) == 3
