"""REDI (Xu et al. 2025): the objective against a hand computation, the direction of one step,
negatives through the trainer, the agents export and `symkd agent train --negatives --loss redi`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from symkd.errors import UserError
from symkd.students.data import Example, TrainingData
from symkd.students.train import TrainConfig, train

POSITIVES = [Example("Q: two plus two?", " four", group=f"p{i}") for i in range(3)]
NEGATIVE = Example("Q: two plus two?", " purple elephants", group="n", negative=True)


def test_redi_terms_match_a_hand_computation() -> None:
    """Two-way vocab, logits [0, ln 3]: p(token 1) = 3/4, p(token 0) = 1/4. Sequences: a positive
    with targets (1, 0), a negative with (0,), a positive with (1,)."""
    import torch
    from torch.nn.functional import cross_entropy

    from symkd.students.losses.redi import DEFAULT_ALPHA, redi_terms

    logits = torch.tensor([[0.0, math.log(3)]] * 4, requires_grad=True)
    targets = torch.tensor([1, 0, 0, 1])
    token_nll = cross_entropy(logits, targets, reduction="none")
    objective, logged = redi_terms(token_nll, torch.tensor([0, 0, 1, 2]), torch.tensor([False, True, False]))
    lp1, lp0 = math.log(3 / 4), math.log(1 / 4)
    # L = sum over positives of -log p(y+)/|y+|, plus alpha * log p(y-)/|y-| over negatives
    hand = -(lp1 + lp0) / 2 + DEFAULT_ALPHA * lp0 / 1 - lp1 / 1
    assert DEFAULT_ALPHA == 0.8 and objective.item() == pytest.approx(hand, abs=1e-6)
    assert logged.tolist() == pytest.approx([-(lp1 + lp0) / 2 - lp1, -lp0], abs=1e-6)
    objective.backward()
    assert logits.grad[2, 0].item() > 0  # raising the negative's target logit raises the loss


def _mean_logliks(folder: Path, examples: list[Example]) -> list[float]:
    """Length-normalised log-likelihood of each example's completion under the model in ``folder``."""
    import torch

    from symkd.students.batching import collate
    from symkd.students.data import tokenize
    from symkd.students.modeling import load_causal_lm
    from symkd.students.steps import loss_sums

    loaded = load_causal_lm(str(folder), device=torch.device("cpu"), dtype=torch.float32, train=False)
    out = []
    for e in examples:
        batch = collate([tokenize(e, loaded.tokenizer)], loaded.tokenizer.pad_token_id)
        with torch.no_grad():
            _, _, logged = loss_sums(loaded.model, None, None, batch, True, redi_alpha=0.8)
        out.append(-float(logged[0] + logged[1]))
    return out


def test_one_redi_step_lowers_the_negative_and_raises_the_positives(tmp_path: Path, tiny_lm: Path) -> None:
    data = TrainingData([POSITIVES[0], NEGATIVE], {"kind": "test"})
    config = TrainConfig(out=tmp_path / "redi", base_model=str(tiny_lm), loss="redi", max_steps=1, batch_size=2,
                         lr=1e-3, eval_fraction=0, device="cpu", precision="fp32", warmup_ratio=0)  # fmt: skip
    summary = train(data, config, progress=False)
    before = _mean_logliks(tiny_lm, [POSITIVES[0], NEGATIVE])
    after = _mean_logliks(tmp_path / "redi", [POSITIVES[0], NEGATIVE])
    assert after[0] > before[0] and after[1] < before[1], (before, after)
    row = summary["history"][0]
    assert summary["data"]["negatives"] == 1 and row["neg_nll"] > 0 and row["pos_nll"] > 0
    # the logged objective is (the positive's mean NLL - 0.8 * the negative's) over the 2 sequences
    assert row["loss"] == pytest.approx((row["pos_nll"] - 0.8 * row["neg_nll"]) / 2, rel=1e-3)


def test_sft_leaves_negatives_out_and_redi_alone_needs_positives(tmp_path: Path, tiny_lm: Path, capsys) -> None:
    data = TrainingData([*POSITIVES, NEGATIVE], {"kind": "test"})
    config = TrainConfig(out=tmp_path / "sft", base_model=str(tiny_lm), max_steps=1, batch_size=4, eval_fraction=0, device="cpu")
    summary = train(data, config, progress=False)
    assert summary["data"]["train_examples"] == 3 and summary["data"]["negatives_left_out"] == 1
    assert "1 negative example(s) left out" in capsys.readouterr().err
    with pytest.raises(UserError, match="negatives only"):
        train(TrainingData([NEGATIVE], {"kind": "test"}), config.model_copy(update={"out": tmp_path / "neg"}), progress=False)
    with pytest.raises(UserError, match="does not combine with white-box KD"):
        TrainConfig(out=tmp_path / "x", loss="redi", kd_loss="forward_kl")


def test_jsonl_rows_may_be_negative(tmp_path: Path) -> None:
    from symkd.students.data import load_data

    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"prompt": "Q:", "completion": " yes"}) + "\n"
                    + json.dumps({"prompt": "Q:", "completion": " no", "negative": True}) + "\n")  # fmt: skip
    data = load_data(path)
    assert [e.negative for e in data.examples] == [False, True] and data.source["negatives"] == 1
    path.write_text(json.dumps({"prompt": "Q:", "completion": " no", "negative": "yes"}) + "\n")
    with pytest.raises(UserError, match="'negative' must be true or false"):
        load_data(path)


def test_agent_negatives_train_only_the_models_own_turns() -> None:
    from symkd.pipelines.agents.export import training_data
    from symkd.students.data import IGNORE_INDEX, tokenize
    from symkd.students.modeling import load_tokenizer

    tok = load_tokenizer("smollm2")
    steps = [{"role": "assistant", "content": "Thought: add.\n```python\nprint(2+2)\n```"},
             {"role": "user", "content": "Observation: 4"},
             {"role": "assistant", "content": "Thought: done.\n```python\nfinal_answer(5)\n```"}]  # fmt: skip
    row = {"id": "t1", "task_id": "q1", "question": "What is 2+2?", "config": {},
           "messages": [{"role": "user", "content": "What is 2+2?"}, *steps]}  # fmt: skip
    data = training_data([{**row, "correct": 1}], tok, {"kind": "test"}, negatives=[{**row, "correct": 0}])
    positive, negative = data.examples
    assert not positive.negative and negative.negative and data.source["negatives"] == 1
    t = tokenize(negative, tok)
    learned = tok.decode([x for x in t.labels if x != IGNORE_INDEX])
    assert t.negative and "final_answer(5)" in learned and "print(2+2)" in learned
    assert "Observation: 4" not in learned and "What is 2+2?" not in learned


def test_agent_train_takes_failed_trajectories_as_negatives(tmp_path: Path, tiny_lm: Path, capsys) -> None:
    from symkd.pipelines.agents.tables import write_trajectories
    from symkd.store.db import Store
    from tests.test_agents_units import run_cli

    def row(task: str, answer: int, correct: int, sample: int, source: str = "gold-rationales") -> dict:
        turns = [{"role": "user", "content": f"What is {task}?"},
                 {"role": "assistant", "content": f"Thought: compute.\n```python\nfinal_answer({answer})\n```"}]  # fmt: skip
        return {"id": f"{task}-{sample}", "source": source, "task_id": task, "sample": sample,
                "question": f"What is {task}?", "reference": "4", "correct": correct, "messages": turns, "config": {}}  # fmt: skip

    db = tmp_path / "run.db"
    with Store(db) as store:
        write_trajectories(store, [row("2+2", 4, 1, 0), row("3+3", 6, 1, 0), row("2+2", 5, 0, 1, "teacher"),  # a failed teacher episode
                                   row("2+2", 7, 0, 2, "teacher"),  # a second one: 2+2 has one positive, so one pair
                                   row("9+9", 1, 0, 0, "teacher")])  # no positive to pair with  # fmt: skip
    args = ["agent", "train", "--db", str(db), "--base-model", str(tiny_lm), "--max-steps", "1", "--batch-size", "4",
            "--eval-fraction", "0", "--device", "cpu", "-q"]  # fmt: skip
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "redi"), "--negatives", "--loss", "redi")
    assert code == 0, err
    card = json.loads((tmp_path / "redi" / "training.json").read_text())
    assert card["config"]["loss"] == "redi" and card["data"]["negatives"] == 1 and card["data"]["train_examples"] == 3
    assert card["history"][0]["neg_nll"] > 0
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "plain"))  # without --negatives: the positives only
    assert code == 0, err
    card = json.loads((tmp_path / "plain" / "training.json").read_text())
    assert card["data"]["train_examples"] == 2 and card["data"]["negatives"] == 0


def test_redi_drift_flags_positives_pushed_up_with_the_negatives() -> None:
    """The bench's diverged run (2026-12-08: from the base model at lr 1e-4) against a stable one."""
    from symkd.students.summary import redi_drift, redi_warning

    def history(pos: list[float], neg: list[float]) -> list[dict]:
        return [{"step": i + 1, "loss": p - 0.8 * n, "pos_nll": p, "neg_nll": n} for i, (p, n) in enumerate(zip(pos, neg))]

    diverged = redi_drift(history([1.84, 1.47, 2.2] + [3.0] * 20 + [9.8, 11.0], [0.93, 1.3, 2.0] + [5.0] * 20 + [50.0, 62.0]), window=3)
    assert diverged["diverged"] and diverged["pos_nll_first"] == pytest.approx((1.84 + 1.47 + 2.2) / 3, abs=1e-5)
    assert diverged["pos_nll_last"] == pytest.approx((3.0 + 9.8 + 11.0) / 3, abs=1e-5)
    assert "REDI diverged" in redi_warning({"final": {"redi": diverged}})
    stable = redi_drift(history([0.5, 0.48, 0.47, 0.46], [0.9, 1.1, 1.3, 1.5]), window=2)
    assert not stable["diverged"] and redi_warning({"final": {"redi": stable}}) is None
    assert redi_drift([{"step": 1, "loss": 0.4}]) is None  # SFT: nothing to say


def test_a_redi_run_records_its_terms_at_start_and_end_in_training_json(tmp_path: Path, tiny_lm: Path, capsys) -> None:
    data = TrainingData([*POSITIVES, NEGATIVE], {"kind": "test"})
    common = {"base_model": str(tiny_lm), "loss": "redi", "batch_size": 4, "eval_fraction": 0, "device": "cpu",
              "precision": "fp32", "warmup_ratio": 0}  # fmt: skip
    gentle = train(data, TrainConfig(out=tmp_path / "gentle", max_steps=4, lr=1e-4, **common), progress=False)
    drift = gentle["final"]["redi"]
    assert drift["pos_nll_first"] == pytest.approx(sum(h["pos_nll"] for h in gentle["history"]) / 4, rel=1e-4)
    assert not drift["diverged"] and "REDI diverged" not in capsys.readouterr().err
    saved = json.loads((tmp_path / "gentle" / "training.json").read_text())
    assert saved["final"]["redi"] == drift
