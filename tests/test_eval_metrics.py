"""COMET-ATOMIC2020 metrics against values computed by hand on tiny corpora."""

from __future__ import annotations

import json
import math
import sys
from types import SimpleNamespace

import pytest

from symkd.errors import UserError
from symkd.pipelines.commonsense.metrics import METRICS, group_references, score_by_relation, score_corpus


def test_bleu_by_hand_clipping_and_closest_brevity_penalty():
    preds = ["to to eat", "happy", "none"]
    refs = [["to eat food now", "to have a snack"], ["happy", "so glad"], ["none"]]
    # unigrams: line 1 "to"×2 clipped to 1 (max count in any one reference) + "eat" = 2 of 3;
    #           line 2 "happy" 1 of 1; line 3 "none" 1 of 1  ->  p1 = 4/5
    # bigrams:  line 1 "to to" 0, "to eat" 1 -> 1 of 2; lines 2-3 have none  ->  p2 = 1/2
    # "closest" reference length per line: 4 (both refs have 4), 1, 1 -> r = 6; c = 3+1+1 = 5
    # c < r: BP = exp(1 - r/c) = exp(-0.2)
    bp = math.exp(1 - 6 / 5)
    scores = score_corpus(preds, refs)
    assert scores["bleu1"] == pytest.approx(4 / 5 * bp, rel=1e-8)  # 0.654985
    assert scores["bleu2"] == pytest.approx(math.sqrt(4 / 5 * 1 / 2) * bp, rel=1e-8)  # 0.517811
    assert scores["bleu4"] < 1e-4  # no trigram matches: BLEU-3/4 collapse to ~0


def test_rouge_l_by_hand():
    # line 1: c = [to go to the store] (5); ref 1 [to the store now]: LCS "to the store" = 3
    #   -> P 3/5, R 3/4; ref 2 [go home]: LCS 1 -> P 1/5, R 1/2. Max P = 0.6, max R = 0.75.
    #   F = (1 + 1.2²)·P·R / (R + 1.2²·P) = 2.44·0.45 / (0.75 + 0.864) = 0.680297
    # line 2: "a b c d" vs "a b" (P 1/2, R 1) and "a b c d e f g h" (P 1, R 1/2):
    #   P and R are maximised separately over references -> 1 and 1 -> F = 1
    f1 = (1 + 1.2**2) * 0.6 * 0.75 / (0.75 + 1.2**2 * 0.6)
    refs = [["to the store now", "go home"], ["a b", "a b c d e f g h"]]
    scores = score_corpus(["to go to the store", "a b c d"], refs)
    assert f1 == pytest.approx(0.680297, abs=1e-6)
    assert scores["rougeL"] == pytest.approx((f1 + 1.0) / 2, rel=1e-12)  # mean over lines


def test_identical_predictions_score_one_and_cider_ten():
    text = ["a dog runs fast", "the cat sleeps now", "birds fly very high"]
    scores = score_corpus(text, [[t] for t in text])
    assert set(scores) == set(METRICS)
    assert scores["bleu1"] == pytest.approx(1.0) and scores["bleu4"] == pytest.approx(1.0)
    assert scores["rougeL"] == 1.0
    # every n-gram occurs in one document of three: tf-idf vectors match, cosine 1 for n = 1..4,
    # no length penalty -> mean 1 × 10
    assert scores["cider"] == pytest.approx(10.0)


def test_none_is_kept_on_both_sides():
    assert score_corpus(["none"], [["none"]])["bleu1"] == pytest.approx(1.0)
    assert score_corpus(["none"], [["none"]])["rougeL"] == 1.0
    # "none" vs "none" counts as a match: (1 + 1) correct unigrams of 1 + 2; r = 1 + 2 = c -> BP 1
    mixed = score_corpus(["none", "to eat"], [["none", "to sleep"], ["to sleep"]])
    assert mixed["bleu1"] == pytest.approx(2 / 3, rel=1e-8)  # 1/2 if "none" lines were dropped
    # a "none" prediction against real tails is an ordinary miss
    assert score_corpus(["none"], [["to eat"]])["rougeL"] == 0.0


def test_cider_needs_matching_ngrams_and_several_documents():
    refs = [["a dog runs"], ["the cat sleeps"], ["birds fly"]]
    matching = score_corpus(["a dog runs", "the cat", "birds fly high"], refs)
    assert matching["cider"] > 0
    disjoint = score_corpus(["x y z", "p q", "m n o"], refs)
    assert disjoint["cider"] == 0.0 and disjoint["bleu1"] < 1e-10 and disjoint["rougeL"] == 0.0
    # one document: idf = log(1) = 0, so CIDEr is 0 even for a perfect match
    assert score_corpus(["a dog runs"], [["a dog runs"]])["cider"] == 0.0
    # all-empty references do not crash the document-frequency check
    assert score_corpus(["a", "b"], [[""], [" "]])["cider"] == 0.0


def test_text_is_stripped_case_kept_and_not_tokenised():
    assert score_corpus(["  to eat \n"], [[" to eat\n"]])["rougeL"] == 1.0
    # the final COMET script does not lowercase; its earlier revision did (lowercase=True)
    assert score_corpus(["Happy"], [["happy"]])["rougeL"] == 0.0
    assert score_corpus(["Happy"], [["happy"]], lowercase=True)["rougeL"] == 1.0
    # no PTB tokenisation: punctuation stays attached to the word
    assert score_corpus(["get a phone."], [["get a phone"]])["rougeL"] < 1.0


def test_per_relation_breakdown():
    rows = [
        {"head": "PersonX eats", "relation": "xReact", "prediction": "full", "references": ["full", "satisfied"]},
        {"head": "chain", "relation": "ObjectUse", "prediction": "lock the bike", "references": ["lock the bike"]},
        {"head": "PersonX runs", "relation": "xNeed", "prediction": "none", "references": ["none", "shoes"]},
        {"head": "PersonX sits", "relation": "xReact", "prediction": "tired", "references": ["rested"]},
        SimpleNamespace(head="x", relation="myRelation", prediction="a b", references=["a b"]),
    ]
    result = score_by_relation(rows)
    assert list(result) == ["overall", "per_relation", "counts"]
    assert list(result["per_relation"]) == ["xNeed", "xReact", "ObjectUse", "myRelation"]  # ATOMIC2020 order
    assert result["counts"] == {"total": 5, "per_relation": {"xNeed": 1, "xReact": 2, "ObjectUse": 1, "myRelation": 1}}
    for scores in [result["overall"], *result["per_relation"].values()]:
        assert list(scores) == list(METRICS)
    preds = [r["prediction"] if isinstance(r, dict) else r.prediction for r in rows]
    refs = [r["references"] if isinstance(r, dict) else r.references for r in rows]
    assert result["overall"] == score_corpus(preds, refs)
    assert result["per_relation"]["xReact"] == score_corpus(["full", "tired"], [["full", "satisfied"], ["rested"]])
    assert result["per_relation"]["xReact"]["bleu1"] == pytest.approx(0.5, rel=1e-8)
    json.dumps(result)  # plain floats, ready for the JSON report


def test_bad_input_is_a_user_error(monkeypatch):
    with pytest.raises(UserError, match="2 predictions but 1 reference lists"):
        score_corpus(["a", "b"], [["a"]])
    with pytest.raises(UserError, match="line 2: references must be a non-empty list"):
        score_corpus(["a", "b"], [["a"], []])
    with pytest.raises(UserError, match="no predictions"):
        score_corpus([], [])
    with pytest.raises(UserError, match="row 1: missing field 'prediction'"):
        score_by_relation([{"head": "h", "relation": "xNeed", "references": ["a"]}])
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)
    with pytest.raises(UserError, match="pip install pycocoevalcap"):
        score_corpus(["a"], [["a"]])


def test_group_references_keeps_order_and_dedupes():
    triples = [("h", "xNeed", "none "), ("h", "xNeed", "shoes"), ("h", "xNeed", "none"), ("g", "xWant", "rest")]
    assert group_references(triples) == {("h", "xNeed"): ["none", "shoes"], ("g", "xWant"): ["rest"]}
    assert group_references(triples, dedupe=False)[("h", "xNeed")] == ["none", "shoes", "none"]
