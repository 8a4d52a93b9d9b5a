"""The Stage contract (symkd.stages) on real stages: commonsense tails and strategies scenarios and
proposals, run end to end through a TeacherSession with deterministic in-process teachers; the
requests' cache keys are the ones the hand-made builders made before (stored answers still hit)."""

from __future__ import annotations

import pytest

from symkd.pipelines.commonsense.applicability import QuestionStage
from symkd.pipelines.commonsense.events import TEMPLATE as EVENTS_TEMPLATE
from symkd.pipelines.commonsense.events import EventStage, check
from symkd.pipelines.commonsense.inferences import TailStage
from symkd.pipelines.strategies.proposals import ProposalStage
from symkd.pipelines.strategies.scenarios import Scenario, ScenarioStage
from symkd.prompts import get_template
from symkd.session import TeacherSession
from symkd.stages import Stage, run_stage
from symkd.store.db import Store
from symkd.teachers.base import Teacher, as_source
from symkd.teachers.messages import Completion, Request, Response
from tests.test_commonsense_pipeline import SEEDS, ScriptedTeacher

KEY = ("scripted", "scripted-1")
ANN = Scenario("gsm:1", "Ann has 3 bags of apples with 4 apples in each bag. How many apples?", "12")
TRAIN = Scenario("gsm:2", "A train goes 30 miles per hour for 2 hours. How far?", "60", "30*2=60\n#### 60")
NEW = "Problem: Bo has 5 boxes of pears with 6 pears in each box. How many pears?\nSolution: 5*6=30\n#### 30"


class WriterTeacher(Teacher):
    """Writes a new problem for scenario requests (nothing for the second parent), "When ..." otherwise."""

    backend = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted-1")
        self.calls = 0

    async def agenerate(self, requests, on_response) -> None:
        source = as_source(requests)
        while (request := await source.next()) is not None:
            self.calls += 1
            if request.id.startswith("gsm:2#new"):
                on_response(request, Response(completions=[Completion(text="I cannot.")]))
            elif "#new" in request.id:
                on_response(request, Response(completions=[Completion(text=NEW)]))
            else:
                on_response(request, Response(completions=[Completion(text=" a total is asked, add the parts.\nMore")]))


# ---- cache keys: the literal keys the old builders made ------------------------------------------
# (prompt_request, tail_request, question_request, proposal_requests, scenario_requests at 1dc2bbb)


def test_event_requests_keep_their_cache_keys():
    seeds = SEEDS + [f"PersonX does thing {i}" for i in range(12)]
    stage = EventStage(seeds, 3, get_template(EVENTS_TEMPLATE))
    assert [r.cache_key(*KEY) for r in stage.requests([0, 1, 7])] == [
        "af7a8aa1981907d0921f9d50bbab963dcd84bb977bb076e2cf3931e9cbd15ecd",
        "3067a9c1bebe6160868434d1a26cebad5cfc1c148f723da4828152ca1f2a0f21",
        "eeb43025b947dcce8d0511921887decb5fbb13ea8c478fb6497ba3f786399684",
    ]


def test_tail_requests_keep_their_cache_keys():
    rows = [("PersonX hugs PersonY", "oReact"), ("kettle", "ObjectUse"), ("PersonX goes jogging", "xWant")]
    keys = [r.cache_key(*KEY) for r in TailStage(seed=1, samples=3).requests(rows)]
    assert keys == [
        "f1045ac9d72dc50dca40ecede36ef9c51cc5b5d08b8a7fb8a99089a043c8053c",
        "6f7210c1eea1d40211ca5b19db896a1462ebc106da1776f0fa54f1cf4bdbac70",
        "9207dc059ab02704ab3a4a0fc4d2e3f65deca1dae2ae5dd7e6e13c224375a24f",
    ]


def test_applicability_requests_keep_their_cache_keys():
    rows = [("PersonX builds muscle", "others"), ("PersonX builds muscle", "need"), ("kettle", "agent")]
    assert [r.cache_key(*KEY) for r in QuestionStage(4).requests(rows)] == [
        "84fd1a1fbfb711383f5c41bf515166c5188d32d6009a7b8c6622fba4bc5c4b74",
        "1f0e0da81d46621f0d10c343059953e910e35774949a7045ac28969a92fec1f5",
        "d03a523437c2dd65195bf22c66c22af24e692cf900f9ce6c07ff87a1c3fecbfb",
    ]


def test_strategies_requests_keep_their_cache_keys():
    rows = [(ANN, "7"), (TRAIN, "")]
    assert [r.cache_key(*KEY) for r in ProposalStage(1).requests(rows)] == [
        "c9bf61f6e8cdb93912263ef28d63ceb91f7325a16830eb4084a3c1c1fc13186b",
        "a279e800d2b5b3b89d5b1f6eeeee95b8351f2e7f40c6b2fc91679c1ce6245946",
    ]
    assert [r.cache_key(*KEY) for r in ProposalStage(2).requests(rows)] == [
        "4a06bc92396c373cbc859e45dad0975ff7bc9cdfc7c7ab719a2891f489092784",
        "d67484c73c2cb07f17c7319633aaab7dea40bfe57217b2b0d76bdfee41f53e96",
    ]
    stage = ScenarioStage(5, 1)
    made = [(r.id, r.cache_key(*KEY)) for r in stage.requests(stage.rows([ANN, TRAIN], 2))]
    assert made == [
        ("gsm:1#new0", "5586c735467a9ebf1e80001c9f9bf59a98bd6e76047464fd77c6662a5f833c3e"),
        ("gsm:1#new1", "8683176e276e00adc2e6a09f9325f7eaaffc40a4c997d916f7c17d128541a9ab"),
        ("gsm:2#new0", "dc1d5f24bbc2521e7d47624664fdb12e0cae6ca889adb7ff235747ab13660360"),
        ("gsm:2#new1", "9a62ac7aff413991c632c02a9be8e9ee9572d8922b107764632dbc1b55325248"),
    ]


# ---- the contract end to end -------------------------------------------------------------------


def test_tail_stage_through_a_session_then_from_the_cache(tmp_path):
    rows = [("PersonX goes jogging", "xWant"), ("PersonX hugs PersonY", "oReact")]
    stage = TailStage(seed=3, samples=3)
    store, teacher = Store(tmp_path / "s.db"), ScriptedTeacher()
    with TeacherSession(teacher, store, progress=False) as session:
        first = list(run_stage(session, stage, rows))
        again = list(run_stage(session, stage, rows, label="again"))
    store.close()
    assert [a.row for a in first] == rows and all(a.answered for a in first)
    assert [a.key for a in first] == [r.cache_key(*KEY) for r in stage.requests(rows)]
    for answer in first:
        assert len(answer.parsed) == len(answer.response.completions) == 3
        kept = [tail for tail, why in answer.parsed if why is None]
        assert kept and not any(name in t for t in kept for name in stage.names(answer.row[0]).values())
        assert {why for _, why in answer.parsed} <= {None, "fragment", "stray-name"}
    assert teacher.calls == 2 and session.stages["again"]["cached"] == 2 and session.stages["again"]["done"] == 0
    assert [a.parsed for a in again] == [a.parsed for a in first]
    assert session.stages["inferences"]["requests"] == 2  # the stage's name labels its totals


def test_event_stage_parses_each_completion(tmp_path):
    stage = EventStage(SEEDS, 3, get_template(EVENTS_TEMPLATE), require=("dog",))
    store = Store(tmp_path / "s.db")
    with TeacherSession(ScriptedTeacher(), store, progress=False) as session:
        answers = list(run_stage(session, stage, range(3)))
    store.close()
    assert [a.request.id for a in answers] == ["event-0", "event-1", "event-2"]
    for answer in answers:
        ((text, reason),) = answer.parsed
        assert text == answer.response.completions[0].text.strip()
        assert reason == check(text, "stop", require=("dog",))
    assert {reason for a in answers for _, reason in a.parsed} - {None, "no-personx"} == {"constraint"}


def test_scenario_and_proposal_stages_parse_per_row(tmp_path):
    stage = ScenarioStage(0, 2)
    store = Store(tmp_path / "s.db")
    with TeacherSession(WriterTeacher(), store, progress=False) as session:
        scenarios = list(run_stage(session, stage, stage.rows([ANN, TRAIN], 2)))
        proposals = list(run_stage(session, ProposalStage(), [(ANN, "7")]))
    store.close()
    assert [(a.row.parent.id, a.row.sample, a.row.index) for a in scenarios] == [
        ("gsm:1", 0, 0), ("gsm:1", 1, 1), ("gsm:2", 0, 2), ("gsm:2", 1, 3)]  # fmt: skip
    made = [a.parsed for a in scenarios]
    assert made[2:] == [None, None]  # no usable problem: None, as parse_scenario says
    assert [s.id for s in made[:2]] == ["gsm:1#r2new0", "gsm:1#r2new1"]
    assert made[0].answer == "30" and made[0].source == "synthetic" and made[0].parent == "gsm:1" and made[0].round == 2
    assert [a.parsed for a in proposals] == ["When a total is asked, add the parts."]


class _Broken(Stage[str, str]):
    name = "broken"

    def requests(self, rows):
        return [Request(id="only", prompt="x")]

    def parse(self, row, response):
        return response.completions[0].text


class _Failing(Teacher):
    backend = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted-1")

    async def agenerate(self, requests, on_response) -> None:
        source = as_source(requests)
        while (request := await source.next()) is not None:
            on_response(request, Response(error="boom"))


def test_one_request_per_row_and_failed_answers_are_not_parsed(tmp_path):
    store = Store(tmp_path / "s.db")
    with TeacherSession(_Failing(), store, progress=False) as session:
        with pytest.raises(ValueError, match="one per row"):
            run_stage(session, _Broken(), ["a", "b"])
        (answer,) = run_stage(session, _Broken(), ["a"])
    store.close()
    assert answer.response is not None and not answer.answered and answer.parsed is None
