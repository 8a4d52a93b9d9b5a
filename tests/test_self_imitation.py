"""Self-imitation without a model: the student's Stage (requests, cache keys, parse) and the rounds bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from symkd.critics.base import apply_critic
from symkd.critics.registry import load_critic
from symkd.graphs.triples import add_events, add_triples
from symkd.pipelines.commonsense import self_imitation
from symkd.pipelines.commonsense.self_imitation import STUDENT_SAMPLING, StudentStage
from symkd.store.db import Store
from symkd.teachers.messages import Completion, GenerationParams, Request, Response

PAIRS = [("PersonX goes jogging", "xReact"), ("PersonX bakes a cake", "xWant")]


def test_the_student_stage_keeps_the_cache_keys_of_the_hand_made_requests() -> None:
    """The Stage builds exactly the requests ``student_requests`` built, so every stored answer stays reachable."""
    from symkd.pipelines.commonsense.comet import comet_prompt
    from symkd.pipelines.commonsense.names import derive_seed

    stage = StudentStage(fingerprint="fp123", samples=2, seed=0, round=1)
    requests = stage.requests(PAIRS)
    by_hand = [Request(id=f"student:{r}:{h}", prompt=comet_prompt(h, r),
                       params=GenerationParams(n=2, seed=derive_seed(0, "student", "fp123", h, r), **STUDENT_SAMPLING))
               for h, r in PAIRS]  # fmt: skip
    assert requests == by_hand
    # pinned: the keys the pre-Stage builder gave (a change here orphans every stored student answer)
    assert [r.cache_key("hf", "students/round-1") for r in requests] == [
        "da59a15a97dcb8d2347d2a5c96827b8afa75791e6f32d5ecabee72fa63db554f",
        "7a31682205d28ce60247beb95cc4b772ee606e434100826d5911667216708099",
    ]
    assert stage.kind == "self-imitation-round-1"
    assert StudentStage(fingerprint="fp123", samples=2, seed=0, round=2).kind == "self-imitation-round-2"


def test_the_student_parse_keeps_usable_tails_with_their_sample_index() -> None:
    stage = StudentStage(fingerprint="fp", samples=3, seed=0, round=1)
    texts = ["happy and proud", "x", " Tired [GEN]\nmore"]
    response = Response(completions=[Completion(text=t) for t in texts])
    assert stage.parse(PAIRS[0], response) == [(0, "happy and proud"), (2, "tired")]
    assert stage.parse(PAIRS[0], Response(completions=[])) == []


@pytest.fixture
def kept_store(tmp_path: Path):
    heads = [h for h, _ in PAIRS]
    with Store(tmp_path / "run.db") as store:
        add_events(store, [{"text": h, "source": "seed"} for h in heads])
        add_triples(store, [{"head": h, "relation": "xReact", "tail": "happy"} for h in heads])
        apply_critic(store, load_critic("rules"), progress=False)
        yield store


def _rounds(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, progress: bool) -> list[dict[str, Any]]:
    """run_rounds with training, its record and the student's sampling stubbed out."""
    import symkd.students.records as records
    import symkd.students.train as train

    sampled: list[int] = []
    summary = {"data": {"train_examples": 2}, "fingerprint": "fp"}
    monkeypatch.setattr(train, "train", lambda data, config, progress: summary)
    monkeypatch.setattr(records, "record_training", lambda store, summary, out, round=None: f"training-{round}")

    def generate_round(store: Store, out: Path, fingerprint: str, pairs: Any, *, round: int, **_: Any) -> dict:
        sampled.append(round)
        return {"requests": len(pairs), "samples": 0, "tails": 0, "new": 0, "failed": 0}

    monkeypatch.setattr(self_imitation, "generate_round", generate_round)
    rows = self_imitation.run_rounds(store, rounds=2, critic_names=["rules"], apply_critics=lambda s: None, pairs=PAIRS,
                                     student_dir=tmp_path / "students", train_options={}, eval_data=None,
                                     eval_split="all", samples=2, seed=0, progress=progress)  # fmt: skip
    assert sampled == [1] and [r["round"] for r in rows] == [1, 2]
    return rows


def test_the_rounds_bar_names_the_current_step(kept_store: Store, tmp_path: Path, monkeypatch, capsys) -> None:
    import symkd.progress

    monkeypatch.setattr(symkd.progress, "DELAY", 0)  # show the bar at once
    _rounds(kept_store, tmp_path, monkeypatch, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "round 1: training on 2 kept triples" in err and "round 1: sampling 2 pairs" in err
    assert "round 2: training on 2 kept triples" in err and "2/2" in err and "round/s" in err
    assert "[round" not in err  # no loose header lines any more


def test_the_rounds_print_nothing_without_progress(kept_store: Store, tmp_path: Path, monkeypatch, capfd) -> None:
    import symkd.progress

    monkeypatch.setattr(symkd.progress, "DELAY", 0)
    _rounds(kept_store, tmp_path, monkeypatch, progress=False)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
