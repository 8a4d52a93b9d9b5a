"""Rules and dedupe critics, and the ``symkd critic`` commands, on hand-made and ATOMIC2020 triples."""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import pytest

from symkd.cli.critics import split_specs
from symkd.graphs.triples import add_triples, triple_id
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.critics.base import apply_critic
from symkd.critics.dedupe import DedupeCritic, shingles, tail_key
from symkd.critics.registry import load_critic
from symkd.pipelines.commonsense.critics.rules import RulesCritic
from symkd.errors import UserError
from symkd.store.db import Store
from tests.conftest import SHARED_DATA
from tests.procs import run_cli

DEV = SHARED_DATA / "atomic2020" / "dev.tsv"
HEAD = "PersonX goes jogging"


def dev_tails() -> dict[str, list[tuple[str, str]]]:
    if not DEV.exists():
        pytest.skip(f"{DEV} not found")
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in DEV.read_text(encoding="utf-8").splitlines():
        left, _, refs = line.partition("\t")
        head, _, relation = left.partition(" @@ ")
        out[relation] += [(head, t.strip()) for t in refs.split("|")]
    return out


def decisions(store: Store, critic: str = "dedupe") -> dict[str, dict]:
    rows = store.query(
        "select t.tail, t.head, t.relation, s.* from critic_scores s join triples t on t.id = s.item_id "
        "where s.critic = ? order by t.rowid",
        (critic,),
    )
    return {(r["head"], r["relation"], r["tail"]): {**r, "details": json.loads(r["details"] or "{}")} for r in rows}


# -- rules --------------------------------------------------------------------------------
@pytest.mark.parametrize("relation", ["xAttr", "xReact", "xIntent", "xNeed"])
def test_human_tails_from_atomic_dev_pass(relation):
    rules = RulesCritic()
    tails = dev_tails()[relation]
    passed = [rules.check(h, relation, t).keep for h, t in tails]
    assert len(tails) > 50
    assert sum(passed) / len(passed) >= 0.9


def test_all_dev_tails_mostly_pass():
    rules = RulesCritic()
    every = [(h, r, t) for r, rows in dev_tails().items() for h, t in rows]
    assert sum(rules.check(*x).keep for x in every) / len(every) >= 0.95


@pytest.mark.parametrize(
    "relation, tail, check",
    [
        ("xAttr", "PersonX PersonX", "banned"),
        ("xReact", "PersonY, PersonY", "banned"),
        ("xAttr", "I'm sorry, as an AI", "banned"),
        ("xWant", "As an AI language model I cannot", "banned"),
        ("xAttr", "http://x.y", "format"),
        ("xWant", "see www.example.com", "format"),
        ("xAttr", "", "format"),
        ("xAttr", "   ", "format"),
        ("xAttr", "a", "format"),
        ("xAttr", "a", "length"),
        ("xAttr", "?!...", "format"),
        ("xAttr", "**brave**", "format"),
        ("xAttr", "<b>brave</b>", "format"),
        ("xWant", "to rest\nto sleep", "format"),
        ("xWant", "to {verb}", "format"),
        ("xAttr", "1. brave", "banned"),
        ("xAttr", "- brave", "banned"),
        ("xAttr", "Situation: brave", "banned"),
        ("xAttr", "Situation 2 brave", "banned"),
        ("xAttr", "Event: brave", "banned"),
        ("xAttr", "to run fast", "form"),
        ("xAttr", "he is athletic", "form"),
        ("xAttr", "very brave and strong and fit and fast", "length"),
        ("xReact", "to take a shower", "form"),
        ("oReact", "they feel proud", "form"),
        ("xIntent", "he wants to get fit", "form"),
        ("xNeed", "because he wanted to", "form"),
        ("xWant", "a new pair of shoes", "form"),
        ("isAfter", "tired", "form"),
        ("isBefore", "to take a shower", "form"),
        ("AtLocation", "to the park", "form"),
        ("xReact", "happy?", "form"),
        ("xIntent", "goes jogging", "echo"),
        ("xEffect", "PersonX goes jogging", "echo"),
        ("isBefore", "PersonX goes jogging and then sleeps", "echo"),
    ],
)
def test_each_rule_fires(relation, tail, check):
    verdict = RulesCritic().check(HEAD, relation, tail)
    assert not verdict.keep and verdict.score < 1.0
    assert check in verdict.details["failed"], verdict.details
    assert verdict.details["why"][check]


@pytest.mark.parametrize(
    "relation, tail",
    [
        ("xAttr", "hardworking"),
        ("xAttr", "animal lover"),
        ("xReact", "physically spent but happy"),
        ("oReact", "glad"),
        ("xIntent", "to be helpful"),
        ("xIntent", "go somewhere"),
        ("xNeed", "have a phone"),
        ("xWant", "to take a photo"),
        ("oWant", "PersonY to leave them alone"),
        ("oWant", "the bullying to stop"),
        ("isAfter", "PersonX runs a mile"),
        ("isBefore", "PersonX puts the kids to bed early"),
        ("HasSubEvent", "abide by ethical rules"),
        ("HinderedBy", "PersonX doesn't own running shoes."),
        ("ObjectUse", "receiving letters"),
        ("AtLocation", "walmart"),
        ("isFilledBy", "a book"),
        ("xEffect", "gets tired"),
    ],
)
def test_good_tails_pass(relation, tail):
    verdict = RulesCritic().check(HEAD, relation, tail)
    assert verdict.keep and verdict.score == 1.0 and not verdict.details


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_none_is_valid_for_every_relation(relation):
    rules = RulesCritic()
    for tail in ("none", "None", "none."):
        assert rules.check(HEAD, relation, tail).keep


def test_scores_threshold_and_options():
    assert RulesCritic().check(HEAD, "xAttr", "to run fast").score == 0.75  # one soft failure
    assert RulesCritic().check(HEAD, "xAttr", "I'm sorry").score == 0.0  # hard failure
    tolerant = load_critic("rules:threshold=0.75")
    assert tolerant.check(HEAD, "xAttr", "to run fast").keep
    assert not tolerant.check(HEAD, "xAttr", "I'm sorry").keep
    assert load_critic("rules:skip=form|echo").check(HEAD, "xAttr", "to run fast").keep
    custom = load_critic("rules:banned=sneakers|running shoes")
    assert custom.check(HEAD, "xNeed", "to buy sneakers").details["failed"] == ["banned"]
    assert custom.check(HEAD, "xNeed", "to buy Running  Shoes").details["failed"] == ["banned"]
    assert custom.check(HEAD, "xNeed", "to buy sneakersets").keep  # whole words only
    assert RulesCritic().check(HEAD, "xNeed", "a taxi cannot come").details["failed"] == ["form"]
    assert not custom.check(HEAD, "xAttr", "As an AI").keep  # defaults still apply
    assert RulesCritic(default_banned=False).check(HEAD, "xAttr", "helpful as an AI").keep
    short = load_critic("rules:max_words=2")
    assert short.check(HEAD, "xWant", "to take a photo").details["failed"] == ["length"]
    with pytest.raises(UserError, match="unknown check 'spelling'"):
        RulesCritic(skip="spelling")
    with pytest.raises(UserError, match="has no option 'nope'"):
        load_critic("rules:nope=1")


def test_rules_through_apply_critic_records_failed_checks(db_path):
    store = Store(db_path)
    add_triples(store, [{"head": HEAD, "relation": "xAttr", "tail": t} for t in ("athletic", "to run", "none", "http://x.y")])
    counts = apply_critic(store, RulesCritic())
    assert counts == {"scored": 4, "kept": 2, "dropped": 2}
    rows = decisions(store, "rules")
    assert rows[(HEAD, "xAttr", "to run")]["details"]["failed"] == ["form"]
    assert rows[(HEAD, "xAttr", "athletic")]["decision"] == "keep"
    assert rows[(HEAD, "xAttr", "athletic")]["critic_version"] == RulesCritic.version


# -- dedupe -------------------------------------------------------------------------------
def _add(store: Store, relation: str, tails, head: str = HEAD) -> None:
    add_triples(store, [{"head": head, "relation": relation, "tail": t} for t in tails])


def test_tail_keys_and_shingles():
    assert tail_key("To go home.") == tail_key("go  HOME!") == "go home"
    assert tail_key("to") == "to" and tail_key("2 eggs") != tail_key("3 eggs")
    assert shingles("buy a car", 2) == {"buy", "a", "car", "buy a", "a car"}


def test_dedupe_exact_and_near_within_head_and_relation(db_path):
    store = Store(db_path)
    _add(store, "xWant", ["to rest", "rest", "to buy a new red car", "to buy a new red car today", "to drink water", "none"])
    _add(store, "xNeed", ["to rest"])  # another relation: not a duplicate
    _add(store, "xWant", ["to rest"], head="PersonX swims")  # another head: not a duplicate
    critic = DedupeCritic()
    critic.bind(store)
    assert apply_critic(store, critic) == {"scored": 8, "kept": 6, "dropped": 2}
    rows = decisions(store)
    exact = rows[(HEAD, "xWant", "rest")]
    assert exact["decision"] == "drop" and exact["score"] == 0.0
    assert exact["details"] == {
        "duplicate_of": triple_id(HEAD, "xWant", "to rest"),
        "duplicate_tail": "to rest",
        "kind": "exact",
        "similarity": 1.0,
    }
    near = rows[(HEAD, "xWant", "to buy a new red car today")]
    assert near["decision"] == "drop" and near["details"]["kind"] == "near"
    assert near["details"]["duplicate_of"] == triple_id(HEAD, "xWant", "to buy a new red car")
    assert 0.8 <= near["details"]["similarity"] < 1.0 and near["score"] == pytest.approx(1 - near["details"]["similarity"])
    kept = {k[2] for k, r in rows.items() if r["decision"] == "keep" and k[:2] == (HEAD, "xWant")}
    assert kept == {"to rest", "to buy a new red car", "to drink water", "none"}


def test_dedupe_threshold_and_exact_method(db_path):
    store = Store(db_path)
    _add(store, "xWant", ["to buy a new red car", "to buy a new red car today", "To buy a new red car!"])
    strict = DedupeCritic(threshold=0.95)
    strict.bind(store)
    assert apply_critic(store, strict)["dropped"] == 0  # "!" variant has the same triple id
    exact = load_critic("dedupe:method=exact")
    exact.bind(store, rescore=True)
    assert apply_critic(store, exact, rescore=True)["dropped"] == 0
    with pytest.raises(UserError, match="method 'fuzzy'"):
        DedupeCritic(method="fuzzy")


def test_dedupe_state_spans_batches_and_reset_clears_it():
    critic = DedupeCritic()
    first = [{"id": "a", "head": HEAD, "relation": "xWant", "tail": "to rest"}]
    second = [{"id": "b", "head": HEAD.lower(), "relation": "xWant", "tail": "Rest."}]
    with pytest.warns(UserWarning, match="no store"):
        assert critic.score(first)[0].keep
    dup = critic.score(second)[0]
    assert not dup.keep and dup.details["duplicate_of"] == "a"
    critic.reset()
    with pytest.warns(UserWarning):
        assert critic.score(second)[0].keep


def test_dedupe_resume_scores_only_new_items_and_sees_earlier_kept(db_path):
    store = Store(db_path)
    _add(store, "xWant", ["to rest", "to rest now please", "to drink water"])
    critic = DedupeCritic()
    critic.bind(store)
    assert apply_critic(store, critic) == {"scored": 3, "kept": 3, "dropped": 0}
    _add(store, "xWant", ["Rest!", "to drink cold water", "to stretch"])
    critic = DedupeCritic()  # a new process: nothing in memory
    critic.bind(store)
    assert apply_critic(store, critic) == {"scored": 3, "kept": 2, "dropped": 1}
    rows = decisions(store)
    assert rows[(HEAD, "xWant", "Rest!")]["details"]["duplicate_of"] == triple_id(HEAD, "xWant", "to rest")
    assert rows[(HEAD, "xWant", "to stretch")]["decision"] == "keep"
    # rescoring re-decides the whole pass from scratch: same decisions, nothing loaded
    critic.bind(store, rescore=True)
    assert apply_critic(store, critic, rescore=True) == {"scored": 6, "kept": 5, "dropped": 1}
    # a constructor db (no bind) also sees earlier passes
    _add(store, "xWant", ["to-rest"])
    assert apply_critic(store, DedupeCritic(db=db_path))["dropped"] == 1


@pytest.mark.slow
def test_dedupe_embedding_method(db_path):
    store = Store(db_path)
    _add(store, "xWant", ["to buy groceries", "to purchase groceries", "to drink water", "to rest"])
    _add(store, "xWant", ["to purchase groceries"], head="PersonX swims")
    critic = load_critic("dedupe:method=embedding,threshold=0.9")
    critic.bind(store)
    assert apply_critic(store, critic) == {"scored": 5, "kept": 4, "dropped": 1}
    dup = decisions(store)[(HEAD, "xWant", "to purchase groceries")]
    assert dup["details"]["kind"] == "near" and dup["details"]["duplicate_tail"] == "to buy groceries"
    assert dup["details"]["similarity"] >= 0.9


# -- CLI ----------------------------------------------------------------------------------


def test_split_specs():
    assert split_specs(["rules,dedupe:threshold=0.8,method=embedding", "judge:teacher=openai:x,base_url=http://h:1/v1"]) == [
        "rules",
        "dedupe:threshold=0.8,method=embedding",
        "judge:teacher=openai:x,base_url=http://h:1/v1",
    ]
    assert split_specs(["rules,max_words=3"]) == ["rules:max_words=3"]
    with pytest.raises(UserError):
        split_specs(["threshold=0.8"])


def test_cli_apply_cascades_resumes_and_reports(capsys, db_path):
    store = Store(db_path)
    _add(store, "xWant", ["to rest", "rest", "I'm sorry, as an AI", "to drink water"])
    store.close()
    code, out, err = run_cli(capsys, "critic", "apply", "--db", str(db_path), "--critics", "rules,dedupe", "-q", "--json")
    assert code == 0, err
    report = json.loads(out)  # one JSON document
    by_critic = {r["critic"]: r for r in report["critics"]}
    assert by_critic["rules"]["scored"] == 4 and by_critic["rules"]["removed"] == 1
    assert by_critic["dedupe"]["scored"] == 3 and by_critic["dedupe"]["removed"] == 1  # cascade: 3 passed rules
    assert report["kept_by_all"] == 2 and report["triples"] == 4
    code, out, _ = run_cli(capsys, "critic", "apply", "--db", str(db_path), "--critics", "rules,dedupe", "-q")
    assert code == 0 and "rules scored 0, removed 0; dedupe scored 0" in out and "2 of 4 triples" in out
    code, out, _ = run_cli(capsys, "critic", "apply", "--db", str(db_path), "-c", "rules", "-c", "dedupe", "-q", "--rescore", "--json")
    assert json.loads(out.splitlines()[-1])["this_pass"][1]["scored"] == 3
    code, out, _ = run_cli(capsys, "critic", "report", "--db", str(db_path))
    assert code == 0 and "rules" in out and "dedupe" in out and "removed" in out
    code, out, _ = run_cli(capsys, "critic", "report", "--db", str(db_path), "--run", "no-such-run", "--json")
    assert code == 0 and json.loads(out) == []


def test_cli_errors_are_one_line(capsys, tmp_path, db_path):
    Store(db_path).close()
    code, _, err = run_cli(capsys, "critic", "apply", "--db", str(db_path), "--critics", "rules,nosuch")
    assert code == 2 and err.strip() == "symkd: error: unknown critic 'nosuch'; known: dedupe, judge, classifier, rules, verifier"
    code, _, err = run_cli(capsys, "critic", "apply", "--db", str(tmp_path / "absent.db"), "--critics", "rules")
    assert code == 2 and "no such database" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "critic", "apply", "--db", str(db_path), "--critics", "dedupe:method=fuzzy")
    assert code == 2 and "method 'fuzzy'" in err
    code, out, _ = run_cli(capsys, "critic", "report", "--db", str(db_path))
    assert code == 0 and "no critic scores yet" in out


def test_missing_library_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasketch", None)
    critic = DedupeCritic(db=None)
    items = [{"id": i, "head": HEAD, "relation": "xWant", "tail": t} for i, t in (("a", "to rest"), ("b", "to sleep"))]
    with pytest.warns(UserWarning), pytest.raises(UserError, match="method=minhash needs datasketch: pip install datasketch"):
        critic.score(items)
