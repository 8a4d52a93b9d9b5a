"""Commonsense distillation, fast unit tests: seeds, names, filters, parsing, rules, constraints, templates."""

from __future__ import annotations

import re

import pytest

from symkd.pipelines.commonsense.cli import split_critics
from symkd.pipelines.commonsense import applicability, events, inferences, names
from symkd.teachers.constraints import check_words, satisfies, violations
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.pipelines.commonsense.seeds import default_seed_file, read_seeds
from symkd.errors import UserError
from symkd.prompts import get_template
from tests.conftest import SHARED_DATA

# ---- seeds ------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SHARED_DATA / "atomic2020" / "seed_events.txt").exists(), reason="shared data not present")
def test_bundled_seed_file_matches_the_shared_one():
    bundled = read_seeds()
    shared = read_seeds(SHARED_DATA / "atomic2020" / "seed_events.txt")
    assert bundled.events == shared.events and len(bundled.events) >= 99
    assert default_seed_file().read_bytes() == (SHARED_DATA / "atomic2020" / "seed_events.txt").read_bytes()
    assert all("PersonX" in e for e in bundled.events) and not bundled.entities
    assert "PersonX doesn't get money" in bundled.events  # curly apostrophe straightened


def test_seed_file_parsing(tmp_path):
    path = tmp_path / "seeds.txt"
    path.write_text(
        "# my seeds\n\nPersonX walks the dog.\n  PersonX  walks the dog \nchain\n"
        "PersonX buys PersonY's lunch @@ oReact\tgrateful| happy\n",
        encoding="utf-8",
    )
    seeds = read_seeds(path)
    assert seeds.events == ["PersonX walks the dog", "PersonX buys PersonY's lunch"]
    assert seeds.entities == ["chain"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"seeds\.txt: no seed events \(the file is empty\)"),
        (b"# only a comment\n\n   \n", r"no seed events"),
        (b"PersonX eats\nPersonX drinks \xff\xfe coffee\n", r"seeds\.txt: line 2: not UTF-8 text \(byte 0xff at column 16\)"),
        (b"PersonX eats\tfood\n", r"line 1: expected one event per line, found a tab"),
        (b"PersonX " + b"x" * 300 + b"\n", r"line 1: 308 characters"),
    ],
)
def test_bad_seed_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "seeds.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        read_seeds(path)
    assert "\n" not in str(info.value)


def test_missing_seed_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.txt: no such seed file"):
        read_seeds(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="not a file"):
        read_seeds(tmp_path)


# ---- names ------------------------------------------------------------------------------------


def test_derived_seeds_are_stable_and_distinct():
    assert names.derive_seed(0, "event", 1) == names.derive_seed(0, "event", 1)
    assert names.derive_seed(0, "event", 1) != names.derive_seed(1, "event", 1)
    assert names.derive_seed(0, "event", 1) != names.derive_seed(0, "event", 2)
    assert names.derive_seed(7, "x") == 966399442  # sha256-based: the same in every process
    assert 0 <= names.derive_seed(123, "a", "b") < 2**31


def test_names_round_trip_and_are_seeded():
    mapping = names.sample_names(names.rng_for(3, "names", "head"))
    assert mapping == names.sample_names(names.rng_for(3, "names", "head"))
    assert len(set(mapping.values())) == 3 and set(mapping) == {"PersonX", "PersonY", "PersonZ"}
    x, y = mapping["PersonX"], mapping["PersonY"]
    text = names.to_names("PersonX gives personY's book to PersonX", mapping)
    assert text == f"{x} gives {y}'s book to {x}"
    assert names.to_placeholders(f"to thank {y} and hug {x}'s dog", mapping) == "to thank PersonY and hug PersonX's dog"
    assert names.people("PersonX meets PersonZ") == {"PersonX", "PersonZ"}


def test_example_names_never_collide_with_head_names():
    assert not set(names.HEAD_NAMES) & set(names.SHOT_NAMES)
    shots = names.name_examples([{"head": "PersonX hugs PersonY", "tail": "to thank PersonX"}], names.rng_for(1, "s"))
    assert shots[0]["x"] in names.SHOT_NAMES and shots[0]["tail"] == f"to thank {shots[0]['x']}"
    assert names.stray_names("to call Olivia later") == ["Olivia"] and names.stray_names("to call PersonX") == []


# ---- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, finish, reason",
    [
        ("PersonX walks the dog", "stop", None),
        ("PersonX walks the", "length", "incomplete"),
        ("PersonX is about to", "stop", "incomplete"),
        ("PersonX walks the dog and", "stop", "incomplete"),
        ("He walks the dog", "stop", "no-personx"),
        ("PersonX walks the dog :)", "stop", "characters"),
        ("PersonX visits the café", "stop", "characters"),
        ("PersonX covers the ___ with paint", "stop", None),
        ("PersonX", "stop", "short"),
        ("PersonX x", "stop", None),
    ],
)
def test_event_filters(text, finish, reason):
    assert events.check(text, finish) == reason


def test_event_constraints_and_prompt():
    assert events.check("PersonX walks the dog", "stop", require=("cat",)) == "constraint"
    assert events.check("PersonX walks the dog", "stop", forbid=("DOG",)) == "constraint"
    tpl = get_template(events.TEMPLATE)
    seeds = [f"PersonX does thing {i}" for i in range(30)]
    stage = events.EventStage(seeds, 0, tpl)
    req = stage.request(4)
    lines = req.prompt.split("\n")
    assert lines[-1] == "11." and lines[0].startswith("1. PersonX") and len(lines) == 11
    assert req.params.stop == ("\n",) and req.params.logprobs and req.params.seed == names.derive_seed(0, "event", 4)
    assert req.prompt == events.EventStage(seeds, 0, tpl).requests([4])[0].prompt  # seeded
    assert req.prompt != stage.request(5).prompt
    assert events.EventStage(seeds[:3], 0, tpl).request(0).prompt.endswith("\n4.")  # fewer seeds than shots


def test_least_likely_fifth_is_dropped():
    cands = [events.Candidate(f"PersonX e{i}", -float(i), "r", "k") for i in range(10)]
    assert events.low_logprob_ids(cands) == {8, 9}
    cands[3].logprob = None  # a backend without log-probs: nothing is dropped
    assert events.low_logprob_ids(cands) == set()


# ---- inferences -------------------------------------------------------------------------------


def test_tail_parsing_maps_names_back_and_drops_fragments():
    mapping = {"PersonX": "Riley", "PersonY": "Omar", "PersonZ": "Nina"}
    assert inferences.parse_tail(" to thank Omar for Riley's help.\nEvent: x", mapping) == ("to thank PersonY for PersonX's help", None)
    assert inferences.parse_tail(" Happy!", mapping) == ("happy", None)
    assert inferences.parse_tail(" Riley runs home", mapping) == ("PersonX runs home", None)
    assert inferences.parse_tail(" ok", mapping) == (None, "fragment")
    assert inferences.parse_tail(" none", mapping) == (None, "fragment")
    assert inferences.parse_tail(" to call Olivia", mapping) == (None, "stray-name")


def test_entity_extraction_rule():
    found = inferences.extract_entities(
        ["PersonX goes to a pawn shop", "PersonX decorates his house", "PersonX sells the house",
         "PersonX takes an opportunity", "PersonX eats PersonY's sandwich", "PersonX has a good time"],
        10,
    )  # fmt: skip
    assert found == ["house", "pawn shop", "sandwich"]
    assert inferences.extract_entities(["PersonX goes to a pawn shop", "PersonX sells the house"], 1) == ["pawn shop"]


def test_tail_requests_use_names_and_are_seeded():
    stage = inferences.TailStage(seed=1, samples=3)
    req, mapping = stage.request("PersonX hugs PersonY", "oReact"), stage.names("PersonX hugs PersonY")
    assert "PersonX" not in req.prompt and "PersonY" not in req.prompt
    assert f"{mapping['PersonX']} hugs {mapping['PersonY']}." in req.prompt
    assert req.prompt.endswith("After this, others feel") and req.params.n == 3
    again = inferences.TailStage(seed=1, samples=3).requests([("PersonX hugs PersonY", "oReact")])[0]
    other = inferences.TailStage(seed=2, samples=3).request("PersonX hugs PersonY", "oReact")
    assert again.cache_key("b", "m") == req.cache_key("b", "m") != other.cache_key("b", "m")


@pytest.mark.parametrize("relation", list(RELATIONS))
def test_every_relation_template_loads_and_renders(relation):
    rel = RELATIONS[relation]
    tpl = inferences.template_for(relation)
    assert tpl.id == f"commonsense/relations/{relation.lower()}" and tpl.prompt is not None
    assert len(tpl.examples) == 5 and all(set(e) == {"head", "tail"} for e in tpl.examples)
    head = "PersonX covers the ___ with PersonY" if relation == "isFilledBy" else ("PersonX bakes bread" if rel.head == "event" else "kettle")
    stage = inferences.TailStage(seed=0, samples=2)
    req, mapping = stage.request(head, relation), stage.names(head)
    assert not re.search(r"Person[XYZ]", req.prompt)
    assert req.prompt.count("Event:" if rel.head == "event" else "Thing:") == 6
    shown = names.to_names(head, mapping)
    assert f"{shown}.\n" in req.prompt and not req.prompt.endswith((" ", "\n"))
    assert "\n" in req.params.stop and req.params.max_tokens <= 24


# ---- applicability ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, relation, verdict",
    [
        ("PersonX walks the dog", "ObjectUse", "out-of-scope"),
        ("chain", "xNeed", "out-of-scope"),
        ("chain", "isAfter", "out-of-scope"),
        ("PersonX hugs PersonY", "oReact", "applies"),
        ("PersonX sees PersonZ", "oWant", "applies"),
        ("PersonX builds muscle", "oReact", "ask"),
        ("PersonX builds muscle", "xNeed", "ask"),
        ("PersonX builds muscle", "xAttr", "applies"),
        ("PersonX builds muscle", "isFilledBy", "none"),
        ("PersonX covers the ___", "isFilledBy", "applies"),
        ("chain", "AtLocation", "applies"),
        ("chain", "Desires", "ask"),
    ],
)
def test_applicability_rules(head, relation, verdict):
    assert applicability.rule(head, relation).verdict == verdict


def test_every_asked_relation_has_a_question_and_examples():
    tpl = get_template(applicability.TEMPLATE)
    assert set(applicability.ASK.values()) == set(applicability.NONE_WHEN)
    for key in applicability.NONE_WHEN:
        examples = [e for e in tpl.examples if e["key"] == key]
        assert sorted(e["answer"] for e in examples) == ["no", "no", "yes", "yes"]
        head = "PersonX builds muscle" if key in ("others", "need", "intent") else "kettle"
        req = applicability.QuestionStage(0).request(head, key)
        assert req.prompt.endswith("Answer:") and "Question: " in req.prompt.split("\n")[-2]
        assert req.params.temperature == 0 and not re.search(r"Person[XYZ]", req.prompt)
    same = applicability.QuestionStage(0).request("PersonX runs", "others")
    assert same.cache_key("b", "m") == applicability.QuestionStage(0).requests([("PersonX runs", "others")])[0].cache_key("b", "m")


@pytest.mark.parametrize("text, answer", [(" yes", True), (" No.", False), ("Yes, it is", True), (" maybe", None), ("", None)])
def test_yes_no_parsing(text, answer):
    assert applicability.parse_answer(text) is answer


# ---- constraints ------------------------------------------------------------------------------


def test_constraint_post_filter():
    assert satisfies("PersonX eats Ice  cream.", require=["ice cream"])
    assert not satisfies("PersonX eats iced cream", require=["ice cream"])
    assert not satisfies("PersonX walks dogs", require=["dog"])  # whole words only
    assert satisfies("PersonX walks dogs", forbid=["dog"])
    assert not satisfies("PersonX walks the Dog", forbid=["dog"])
    assert satisfies("anything", require=[], forbid=[])
    assert not satisfies("a+b", require=["a+b c"]) and satisfies("use a+b now", require=["a+b"])
    assert violations("PersonX walks the dog", ["cat"], ["dog"]) == ["missing:cat", "forbidden:dog"]
    assert check_words([" ice   cream ", "dog", "dog"], "require") == ("ice cream", "dog")
    with pytest.raises(UserError, match="forbid: empty word"):
        check_words(["ok", "  "], "forbid")


def test_critic_spec_lists():
    assert split_critics("rules,classifier:threshold=0.7,batch_size=8,dedupe") == [
        "rules",
        "classifier:threshold=0.7,batch_size=8",
        "dedupe",
    ]
    assert split_critics("none") == [] and split_critics("") == []
    with pytest.raises(UserError, match="comes before any critic"):
        split_critics("threshold=0.5,rules")


# ---- settings (DistillConfig / EvalConfig) ----------------------------------------------------


def test_distill_config_defaults_and_spellings():
    from symkd.pipelines.commonsense.config import DistillConfig, EvalConfig, settings

    config = DistillConfig()
    assert config.critics == ["rules", "dedupe", "classifier"] and config.require_words == [] and config.forbid_words == []
    assert (config.n_events, config.samples_per_relation, config.seed, config.relations, config.constrain) == (50, 2, 0, "all", "all")
    assert DistillConfig(critics="none").critics == [] and DistillConfig(critics=("rules",)).critics == ["rules"]
    assert DistillConfig(critics="rules,classifier:threshold=0.7,dedupe").critics == split_critics("rules,classifier:threshold=0.7,dedupe")
    assert settings(DistillConfig, config, {}) is config
    changed = settings(DistillConfig, config, {"seed": 3, "samples_per_relation": 4})
    assert (changed.seed, changed.samples_per_relation, config.seed) == (3, 4, 0)
    with pytest.raises(UserError, match=r"^n_events: must be greater than or equal to 0 \(got -1\)$"):
        settings(DistillConfig, None, {"n_events": -1})
    with pytest.raises(UserError, match=r"^unknown option 'beams' \(EvalConfig fields: "):
        settings(EvalConfig, {"split": "eval"}, {"beams": 2})
    assert settings(EvalConfig, None, {"num_beams": 2}).num_beams == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["distill", "commonsense", "--samples", "0"], r"--samples: must be greater than or equal to 1 \(got 0\)"),
        (["distill", "commonsense", "--constrain", "tails"], r"--constrain: must be 'all', 'events' or 'inferences'"),
        (["distill", "commonsense", "--eval-split", "test"], r"--eval-split: must be 'all', 'eval' or 'critic'"),
        (["eval", "commonsense", "--data", "x.tsv", "--model", "m", "--beams", "0"], r"--beams: must be greater than or equal to 1"),
    ],
)
def test_bad_settings_name_their_flag(capsys, tmp_path, args, message):
    from tests.procs import run_cli

    if args[0] == "distill":
        args = [*args, "--db", str(tmp_path / "x.db")]
    code, _, err = run_cli(capsys, *args)
    assert code != 0 and re.search(message, err), err
    assert not (tmp_path / "x.db").exists()
