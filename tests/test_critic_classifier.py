"""Classifier critic: ATOMIC reader, by-head dev split, negatives, thresholds, training, scoring."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from symkd.pipelines.commonsense import atomic
from symkd.graphs.triples import add_triples, normalize
from symkd.pipelines.commonsense.critics import training
from symkd.errors import UserError
from tests.conftest import SHARED_DATA

DEV = SHARED_DATA / "atomic2020" / "dev.tsv"
needs_dev = pytest.mark.skipif(not DEV.is_file(), reason="shared dev.tsv not present")

SMALL = """\
PersonX goes jogging @@ xNeed\tto buy shoes| to get dressed
PersonX goes jogging @@ xWant\tto drink water| to rest
PersonX bakes a cake @@ xNeed\tto buy flour| to preheat the oven
PersonX bakes a cake @@ xAttr\tskilled| patient
PersonX reads a book @@ xNeed\tto buy flour| to find the book
PersonX reads a book @@ oReact\tnone
"""


def write(tmp_path: Path, text: str | bytes, name: str = "a.tsv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_reader_parses_heads_relations_tails(tmp_path):
    lines = atomic.read_atomic_tsv(write(tmp_path, SMALL + "\n\n"))
    assert len(lines) == 6
    assert lines[0] == atomic.AtomicLine(1, "PersonX goes jogging", "xNeed", ("to buy shoes", "to get dressed"))
    assert lines[5].tails == ("none",)


@pytest.mark.parametrize(
    "text, message",
    [
        ("PersonX runs @@ xNeed\tshoes\nPersonX runs xWant\twater\n", r"a\.tsv:2: missing '@@'"),
        ("PersonX runs @@ xNeed\tshoes\nPersonX runs @@ xWant water\n", r"a\.tsv:2: missing TAB"),
        ("PersonX runs @@ xneed\tshoes\n", r"a\.tsv:1: relation: unknown relation 'xneed' \(did you mean xNeed\?\)"),
        ("PersonX runs @@ xNeed\t | \n", r"a\.tsv:1: no tails"),
        (" @@ xNeed\tshoes\n", r"a\.tsv:1: empty head"),
        (b"PersonX runs @@ xNeed\tshoes\nPersonX \xff @@ xNeed\tx\n", r"a\.tsv:2: not UTF-8"),
        ("\n  \n", r"a\.tsv: empty file"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        atomic.read_atomic_tsv(write(tmp_path, text))


def test_reader_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        atomic.read_atomic_tsv(tmp_path / "nope.tsv")
    with pytest.raises(UserError, match="is a folder"):
        atomic.read_atomic_tsv(tmp_path)


def test_split_rule_is_a_stable_hash_of_the_normalised_head():
    # Pinned: changing the rule would silently move dev heads between critic and evaluation.
    assert atomic.head_bucket("PersonX goes jogging") == atomic.head_bucket("  personx GOES jogging. ")
    assert [atomic.head_bucket(h) for h in ("PersonX goes jogging", "chain", "PersonX builds muscle")] == [78, 11, 66]


@needs_dev
def test_dev_split_is_by_head_deterministic_disjoint_and_about_half():
    critic, evaluation = atomic.dev_split(DEV)
    again = atomic.dev_split(str(DEV))
    assert (critic, evaluation) == again
    all_lines = atomic.read_atomic_tsv(DEV)
    assert sorted(ln.lineno for ln in critic + evaluation) == [ln.lineno for ln in all_lines]
    critic_heads = {normalize(ln.head) for ln in critic}
    eval_heads = {normalize(ln.head) for ln in evaluation}
    assert not critic_heads & eval_heads
    assert 0.4 < len(critic_heads) / (len(critic_heads) + len(eval_heads)) < 0.6
    desc = atomic.describe_lines(critic)
    assert desc["lines"] == len(critic) and desc["heads"] == len(critic_heads)
    assert atomic.compact_ranges([5, 1, 2, 3, 9, 10]) == "1-3,5,9-10"


def test_corrupted_tails_never_match_the_true_tails(tmp_path):
    lines = atomic.read_atomic_tsv(write(tmp_path, SMALL))
    truth = training.true_tails(lines)
    negatives = training.corrupt(lines, 3, random.Random(0))
    assert {ex.kind for ex in negatives} == {"other-head", "other-relation"}
    heads_of_tail = {}
    for ln in lines:
        for t in ln.tails:
            heads_of_tail.setdefault(normalize(t), set()).add((normalize(ln.head), ln.relation))
    for ex in negatives:
        assert ex.label == 0
        assert normalize(ex.tail) not in truth[(normalize(ex.head), ex.relation)]
        sources = heads_of_tail[normalize(ex.tail)]
        if ex.kind == "other-relation":
            assert any(h == normalize(ex.head) and r != ex.relation for h, r in sources)
        else:
            assert any(h != normalize(ex.head) for h, _ in sources)
    # "to buy flour" is a true xNeed tail of two heads: a negative for neither of them
    flour = {ex.head for ex in negatives if ex.relation == "xNeed" and ex.tail == "to buy flour"}
    assert not flour & {"PersonX bakes a cake", "PersonX reads a book"}


def test_rejects_become_negatives_unless_they_are_references(tmp_path):
    lines = atomic.read_atomic_tsv(write(tmp_path, SMALL))
    rejects = atomic.read_atomic_tsv(write(tmp_path, "PersonX goes jogging @@ xNeed\tto fly| To buy shoes.\n", "r.tsv"))
    examples, conflicts = training.rejected(rejects, lines)
    assert [(ex.tail, ex.kind, ex.label) for ex in examples] == [("to fly", "reject", 0)]
    assert conflicts == 1


@needs_dev
def test_examples_split_train_and_validation_by_head():
    critic, _ = atomic.dev_split(DEV)
    train, val, counts = training.make_examples(critic, per_positive=2, seed=1)
    assert {normalize(e.head) for e in train}.isdisjoint({normalize(e.head) for e in val})
    assert counts["train"]["human"] == sum(e.label for e in train)
    assert training.make_examples(critic, per_positive=2, seed=1)[0] == train
    assert training.make_examples(critic, per_positive=2, seed=2)[0] != train


def test_threshold_selection_for_recall_and_precision():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [1, 1, 0, 1, 0, 1, 0, 0]
    cfg = training.TrainConfig(target_recall=None, target_precision=0.75)
    metrics, curve = training.evaluate(scores, labels, cfg)
    assert metrics["thresholds"]["high"] == {"threshold": 0.8, "precision": 1.0, "recall": 0.5}
    assert metrics["thresholds"]["medium"]["recall"] >= 0.8
    assert metrics["thresholds"]["chosen"] == {"threshold": 0.6, "precision": 0.75, "recall": 0.75}
    assert training.threshold_for(curve, recall=0.1)["threshold"] == 0.9
    with pytest.raises(UserError, match=r"no threshold reaches precision 0.9 on validation \(best 0.600\)"):
        training.threshold_for({"thresholds": [0.5, 0.6], "precision": [0.5, 0.6], "recall": [1.0, 0.5]}, precision=0.9)


def test_train_command_rejects_bad_targets(tmp_path):
    from symkd.pipelines.commonsense.critics.cli import train

    with pytest.raises(UserError, match="give one, not both"):
        train(data=None, rejects=None, out=None, target_recall=0.5, target_precision=0.7, dev_split=None,
              epochs=1, seed=1, negatives=1, device="cpu", quiet=True)
    with pytest.raises(UserError, match="does not exist"):
        train(data=write(tmp_path, SMALL), rejects=None, out=tmp_path / "no" / "x", target_recall=None,
              target_precision=None, dev_split=None, epochs=1, seed=1, negatives=1, device="cpu", quiet=True)


# -- slow: these load MiniLM ------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    from symkd.pipelines.commonsense.critics.classifier import ClassifierCritic

    return ClassifierCritic(device="cpu")


@pytest.mark.slow
@needs_dev
def test_training_on_a_small_slice_writes_an_artifact(tmp_path):
    from symkd.pipelines.commonsense.critics.artifact import train_critic
    from symkd.pipelines.commonsense.critics.classifier import ClassifierCritic

    critic_lines, _ = atomic.dev_split(DEV)
    heads = list(dict.fromkeys(normalize(ln.head) for ln in critic_lines))[:80]
    text = "".join(f"{ln.head} @@ {ln.relation}\t{'| '.join(ln.tails)}\n" for ln in critic_lines if normalize(ln.head) in heads)
    data = write(tmp_path, text, "slice.tsv")
    cfg = training.TrainConfig(epochs=20, device="cpu")
    folder, card = train_critic(data, out=tmp_path / "mini", config=cfg)
    assert sorted(p.name for p in folder.iterdir()) == ["CARD.md", "card.json", "head.safetensors", "pr_curve.png", "validation.json"]
    assert (folder / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "head.safetensors").stat().st_size < 1_000_000
    assert card["data"]["dev_split"] is None and card["data"]["file"] == "slice.tsv"
    assert card["metrics"]["auc"] > 0.6, card["metrics"]
    assert json.loads((folder / "card.json").read_text())["version"] == card["version"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mini")]  # no temp folders left
    critic = ClassifierCritic(model=folder, device="cpu")
    assert critic.version == card["version"] and critic.version.startswith("minilm-")
    assert critic.threshold == card["threshold"]
    assert critic.estimated_precision() == card["thresholds"]["chosen"]["precision"]


@pytest.mark.slow
@needs_dev
def test_bundled_critic_prefers_held_out_human_triples(bundled):
    card = bundled.card
    assert card["data"]["dev_split"]["rule"] == atomic.SPLIT_RULE
    _, evaluation = atomic.dev_split(DEV)
    lines = evaluation[:120]  # heads the critic never saw
    pos = training.positives(lines)
    neg = training.corrupt(lines, 1, random.Random(0))
    p_pos = bundled.probabilities([(e.head, e.relation, e.tail) for e in pos])
    p_neg = bundled.probabilities([(e.head, e.relation, e.tail) for e in neg])
    assert sum(p_pos) / len(p_pos) > sum(p_neg) / len(p_neg) + 0.05


@pytest.mark.slow
def test_apply_critic_records_name_version_and_threshold(db_path, bundled):
    from symkd.critics.base import apply_critic, critic_report
    from symkd.store import Store

    with Store(db_path) as store:
        add_triples(store, [
            {"head": "PersonX goes jogging", "relation": "xNeed", "tail": "to put on running shoes"},
            {"head": "PersonX goes jogging", "relation": "xReact", "tail": "tired"},
            {"head": "PersonX bakes a cake", "relation": "xAttr", "tail": "the oven is made of wood"},
        ])
        counts = apply_critic(store, bundled)
        rows = store.query("select critic, critic_version, score, decision, threshold from critic_scores")
        report = critic_report(store, [bundled])
    assert counts["scored"] == 3 and counts["kept"] + counts["dropped"] == 3
    assert {(r["critic"], r["critic_version"], r["threshold"]) for r in rows} == {("classifier", bundled.version, bundled.threshold)}
    assert all(0.0 <= r["score"] <= 1.0 and r["decision"] == ("keep" if r["score"] >= bundled.threshold else "drop") for r in rows)
    assert report[0]["estimated_precision"] == bundled.estimated_precision() is not None


@pytest.mark.slow
def test_threshold_names_and_errors(bundled):
    from symkd.pipelines.commonsense.critics.classifier import ClassifierCritic
    from symkd.critics.registry import load_critic

    thresholds = bundled.card["thresholds"]
    high = load_critic("classifier:threshold=high,device=cpu")
    medium = ClassifierCritic(threshold="medium", device="cpu")
    assert high.threshold == thresholds["high"]["threshold"] > medium.threshold == thresholds["medium"]["threshold"]
    assert high.estimated_precision() >= medium.estimated_precision()
    assert ClassifierCritic(threshold=0.25).threshold == 0.25
    assert ClassifierCritic(model="minilm-atomic", threshold="0.3").version == bundled.version
    with pytest.raises(UserError, match="neither a number nor one of"):
        ClassifierCritic(threshold="strict")
    with pytest.raises(UserError, match="within 0..1"):
        ClassifierCritic(threshold=3)
    with pytest.raises(UserError, match="no such critic folder"):
        ClassifierCritic(model="/nonexistent/critic")
