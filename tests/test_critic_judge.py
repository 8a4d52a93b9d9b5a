"""LLM-judge critic: rating parser, requests from the template, cache and failures (fake server),
and a small run with the embedded SmolLM2."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

import symkd.session as symkd_session
from symkd.cli import main
from symkd.critics.base import apply_critic, critic_report
from symkd.critics.judge import LLMJudgeCritic, parse_rating, statement
from symkd.critics.registry import load_critic
from symkd.errors import UserError
from symkd.graphs.triples import add_triples, triple_id
from symkd.prompts import get_template
from symkd.store.db import Store

HEAD = "PersonX goes jogging"

#: the fake server answers "echo 0: <last prompt line>", so this template puts the tail last
ECHO_TEMPLATE = """\
id: tests/judge-echo
version: "1"
variables: [statement, tail]
messages:
  - role: user
    content: |-
      Rate: {{ statement }}
      {{ tail }}
params: {max_tokens: 16, temperature: 0.0}
"""


@pytest.mark.parametrize(
    "text, rating",
    [
        ("4", 4.0),
        (" 5\n", 5.0),
        ("Rating: 4/5", 4.0),
        ("**3**", 3.0),
        ("I'd rate it 2 out of 5.", 2.0),
        ("On a scale of 1-5, I'd say 2", 2.0),
        ("1 to 5: 5", 5.0),
        ("5/5", 5.0),
        ("4.5", 4.5),
        ("Four.", 4.0),
        ("Rating: three", 3.0),
        ("No one would; 1", 1.0),
        ("echo 0: Rating:", None),
        ("This one is fine", None),
        ("10", None),
        ("0", None),
        ("6", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def test_statements_read_as_sentences():
    assert statement(HEAD, "xReact", "tired") == "PersonX goes jogging. As a result, PersonX feels tired."
    assert statement(HEAD, "xNeed", "to buy shoes.") == "PersonX goes jogging. But before, PersonX needed to buy shoes."
    assert statement("umbrella", "ObjectUse", "keeping dry") == "umbrella is used for keeping dry."
    assert statement("PersonX eats ___", "isFilledBy", "pizza") == "PersonX eats pizza."


def test_requests_come_from_the_shipped_template():
    critic = LLMJudgeCritic(cache_db=":memory:")
    [req] = critic.requests([{"id": "t1", "head": HEAD, "relation": "xReact", "tail": "tired"}])
    tpl = get_template("critics/judge")
    assert (req.id, req.template_id, req.template_version) == ("t1", tpl.id, tpl.version)
    user = req.messages[-1].content
    assert user.endswith("Statement: PersonX goes jogging. As a result, PersonX feels tired.\nRating:")
    assert user.count("Rating:") == len(tpl.examples) + 1 and req.params.temperature == 0.0
    assert {e["rating"] for e in tpl.examples} == {1, 2, 3, 4, 5}


def _store_with(db_path, tails, relation="xReact"):
    store = Store(db_path)
    add_triples(store, [{"head": HEAD, "relation": relation, "tail": t} for t in tails])
    return store


def _scores(store):
    rows = store.query("select s.*, t.tail from critic_scores s join triples t on t.id = s.item_id where s.critic = 'judge'")
    return {r["tail"]: {**r, "details": json.loads(r["details"])} for r in rows}


def test_ratings_through_the_fake_server(db_path, tmp_path, fake_openai):
    template = tmp_path / "echo.yaml"
    template.write_text(ECHO_TEMPLATE)
    store = _store_with(db_path, ["glad 4", "sad 2", "Rating: 5/5", "no rating here", "none"])
    critic = LLMJudgeCritic(teacher="openai:fake", base_url=fake_openai.base_url, template=str(template), cache_db=store)
    assert apply_critic(store, critic) == {"scored": 5, "kept": 4, "dropped": 1}
    rows = _scores(store)
    assert rows["glad 4"]["score"] == pytest.approx(0.8) and rows["glad 4"]["decision"] == "keep"
    assert rows["glad 4"]["details"] == {"rating": 4.0, "answer": "echo 0: glad 4"}
    assert rows["sad 2"]["score"] == pytest.approx(0.4) and rows["sad 2"]["decision"] == "drop"
    assert rows["Rating: 5/5"]["score"] == pytest.approx(1.0)
    unparsed = rows["no rating here"]
    assert unparsed["score"] is None and unparsed["decision"] == "keep"
    assert unparsed["details"] == {"rating": None, "answer": "echo 0: no rating here", "unparsed": True}
    assert rows["none"]["score"] is None and rows["none"]["decision"] == "keep"
    assert {(r["critic_version"], round(r["threshold"], 6)) for r in rows.values()} == {("1", 0.6)}
    asked = fake_openai.stats()["total"]
    assert asked == 4  # "none" is not sent
    # rescoring with another threshold and on_unparsed=drop asks nothing again: answers are cached
    strict = LLMJudgeCritic(
        teacher="openai:fake", base_url=fake_openai.base_url, template=str(template), cache_db=store,
        threshold=5, on_unparsed="drop",
    )  # fmt: skip
    assert apply_critic(store, strict, rescore=True) == {"scored": 5, "kept": 2, "dropped": 3}
    assert fake_openai.stats()["total"] == asked
    report = {r["critic"]: r for r in critic_report(store, [strict])}
    assert report["judge"]["removed"] == 3 and report["judge"]["estimated_precision"] is None


def test_shipped_template_answers_without_a_digit_are_unparsed(db_path, fake_openai):
    store = _store_with(db_path, ["tired"])
    critic = load_critic(f"judge:teacher=openai:fake,base_url={fake_openai.base_url},on_unparsed=drop")
    critic.bind(store)
    assert apply_critic(store, critic) == {"scored": 1, "kept": 0, "dropped": 1}
    assert _scores(store)["tired"]["details"]["answer"] == "echo 0: Rating:"


def test_failed_requests_stop_the_pass_and_a_rerun_retries(db_path, tmp_path, fake_openai):
    template = tmp_path / "echo.yaml"
    template.write_text(ECHO_TEMPLATE)
    store = _store_with(db_path, ["fine 4", "boom 3 #fault=500x3"])
    critic = LLMJudgeCritic(
        teacher="openai:fake", base_url=fake_openai.base_url, template=str(template), cache_db=store, max_retries=0
    )
    with pytest.raises(UserError, match=r"1 of 2 requests failed .*rerun to retry"):
        apply_critic(store, critic)
    assert _scores(store) == {}
    for _ in range(3):  # each rerun is one more try; the fault clears after three
        try:
            counts = apply_critic(store, critic)
            break
        except UserError:
            continue
    assert counts == {"scored": 2, "kept": 2, "dropped": 0}
    assert _scores(store)["boom 3 #fault=500x3"]["details"]["rating"] == 3.0


def test_options_are_checked(tmp_path):
    with pytest.raises(UserError, match="must be in 1..5"):
        LLMJudgeCritic(threshold=0.6)
    with pytest.raises(UserError, match="on_unparsed"):
        LLMJudgeCritic(on_unparsed="maybe")
    bad = tmp_path / "bad.yaml"
    bad.write_text(ECHO_TEMPLATE.replace("[statement, tail]", "[statement, tail, mood]").replace("{{ tail }}", "{{ tail }} {{ mood }}"))
    with pytest.raises(UserError, match=r"bad.yaml: field variables: .* not 'mood'"):
        LLMJudgeCritic(template=str(bad))
    with pytest.raises(UserError, match="needs a store"):
        LLMJudgeCritic().score([{"id": "x", "head": HEAD, "relation": "xReact", "tail": "tired"}])


def test_cli_binds_the_database_as_the_cache(capsys, db_path, fake_openai):
    _store_with(db_path, ["tired", "I'm sorry, as an AI"]).close()
    spec = f"rules,judge:teacher=openai:fake,base_url={fake_openai.base_url}"
    assert main(["critic", "apply", "--db", str(db_path), "--critics", spec, "-q", "--json"]) is None  # success: no exit
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1])["this_pass"][1] == {"critic": "judge", "version": "1", "scored": 1, "kept": 1, "dropped": 0}
    with Store(db_path) as store:
        assert store.scalar("select count(*) from runs where kind = 'critic-judge'") == 1
        assert store.scalar("select count(*) from responses") == 1


def _smollm2_ratings(store, teacher, **options):
    triples = [
        ("PersonX goes to the store", "xWant", "to buy food"),
        ("PersonX loses the game", "xReact", "sad"),
        ("PersonX is hungry", "xNeed", "to fly to the moon"),
        ("car", "ObjectUse", "driving to work"),
        ("PersonX wins the lottery", "xAttr", "lucky"),
    ]
    add_triples(store, [{"head": h, "relation": r, "tail": t} for h, r, t in triples])
    critic = LLMJudgeCritic(teacher=teacher, cache_db=store, **options)
    assert apply_critic(store, critic)["scored"] == len(triples)
    rows = store.query("select * from critic_scores where critic = ? and critic_version = ?", (critic.name, critic.version))
    assert {r["item_id"] for r in rows} == {triple_id(*t) for t in triples}
    for row in rows:
        details = json.loads(row["details"])
        assert row["score"] is not None and 0.2 <= row["score"] <= 1.0, details
        assert details["rating"] * 0.2 == pytest.approx(row["score"])
        assert row["decision"] == ("keep" if details["rating"] >= 3 else "drop")
    return rows


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("symkd.teachers.llamacpp") is None,
    reason="the embedded smollm2 teacher runs on symkd.teachers.llamacpp (llama-cpp-python)",
)
def test_embedded_smollm2_rates_five_triples(db_path):
    _smollm2_ratings(Store(db_path), "smollm2")


@pytest.mark.slow
def test_smollm2_over_a_llama_cpp_server_rates_five_triples(db_path, llama_server):
    rows = _smollm2_ratings(Store(db_path), "openai:smollm2", base_url=llama_server.base_url, concurrency=1)
    assert not any(math.isnan(r["score"]) for r in rows)


def test_a_judge_that_gives_one_rating_to_everything_is_flagged(db_path, tmp_path, fake_openai):
    template = tmp_path / "echo.yaml"
    template.write_text(ECHO_TEMPLATE)
    store = _store_with(db_path, [f"tail {chr(97 + i)} 2" for i in range(20)])
    critic = LLMJudgeCritic(teacher="openai:fake", base_url=fake_openai.base_url, template=str(template), cache_db=store)
    with pytest.warns(UserWarning, match="rated all 20 triples of this batch 2"):
        assert apply_critic(store, critic)["dropped"] == 20


def test_judge_asks_once_for_all_batches(monkeypatch, db_path, fake_openai):
    """Many batches, one session and one cached run (not a new teacher and runs row per batch)."""
    _store_with(db_path, ["tired", "sleepy", "hungry"]).close()
    monkeypatch.setattr(LLMJudgeCritic, "batch_size", 1)
    loads = []
    real = symkd_session.load_teacher
    monkeypatch.setattr(symkd_session, "load_teacher", lambda *a, **k: loads.append(a) or real(*a, **k))
    with Store(db_path) as store:
        critic = LLMJudgeCritic(teacher="openai:fake", base_url=fake_openai.base_url)
        counts = apply_critic(store, critic)
        assert counts["scored"] == 3
        assert store.scalar("select count(*) from runs where kind = 'critic-judge'") == 1
    assert len(loads) <= 1
