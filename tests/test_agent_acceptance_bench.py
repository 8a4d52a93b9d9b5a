"""bench/agent_acceptance.py at toy size on the CPU: the same script the GPU run uses.

Trains an agent and a CoT student on 8 GSM8K train problems (the real embedded SmolLM2-135M,
real sandbox), evaluates both on 4 test problems and checks the result document the README
and BENCHMARKS tables are rendered from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (DATA / "train.jsonl").is_file(), reason="needs ../shared/data/gsm8k")]


def run_bench(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "agent_acceptance.py"), "--preset", "smoke", "--only", "size",
                           "--work", str(tmp_path / "work"), "--out", str(out), "--data-dir", str(DATA), "--device", "cpu",
                           *extra], capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def whole_plan(tmp_path_factory) -> tuple[Path, dict]:
    """One run of the whole smoke plan (its work folder, its document), shared by the tests below:
    the plan's sizes are the settings a size-only run makes, so it is trained once."""
    tmp = tmp_path_factory.mktemp("smoke")
    run_bench(tmp, tmp / "whole.json", "--only", "size,variants,votes,sag,self,base")
    return tmp, json.loads((tmp / "whole.json").read_text())


def test_smoke_preset_writes_every_field_a_table_needs(whole_plan):
    tmp_path, whole = whole_plan
    sized = [s for s in whole["settings"] if s["name"] in ("agent_8", "cot_8")]
    doc = {**whole, "settings": sized, "mcnemar": {k: v for k, v in whole["mcnemar"].items() if k == "agent_8 vs cot_8"}}
    out = tmp_path / "acceptance.json"
    out.write_text(json.dumps(doc))
    assert doc["n_test"] == 4 and doc["hardware"]
    settings = {s["name"]: s for s in doc["settings"]}
    assert set(settings) == {"agent_8", "cot_8"}, [s.get("error") for s in whole["settings"]]
    for s in settings.values():
        for key in ("accuracy", "ci95", "n_train_problems", "train_tokens", "epochs", "seconds", "hardware", "items"):
            assert key in s, (s["name"], key)
        assert s["items"] == 4 and s["n_train_problems"] == 8 and 0 <= s["ci95"][0] <= s["accuracy"] <= s["ci95"][1]
    # the CoT student gets the agent student's training-token budget (to within one batch)
    assert abs(settings["cot_8"]["train_tokens"] - settings["agent_8"]["train_tokens"]) < 0.25 * settings["agent_8"]["train_tokens"]
    pair = doc["mcnemar"]["agent_8 vs cot_8"]
    assert pair["n"] == 4 and 0 <= pair["p_value"] <= 1
    # the gold data was converted by the bench itself (the sandbox ran every program)
    assert doc["data"]["gold_8_variants_x4"]["converted"] >= 6

    # a rerun with --resume reuses every finished setting (no training, same numbers, same paired test)
    run_bench(tmp_path, out, "--resume")
    again = json.loads(out.read_text())
    assert [s.get("resumed") for s in again["settings"]] == [True, True]
    assert [s["accuracy"] for s in again["settings"]] == [s["accuracy"] for s in doc["settings"]]
    assert again["mcnemar"] == doc["mcnemar"] and again["data"] == doc["data"]

    # per-item results travel in the JSON (a bit per test problem), so the paired test survives
    # the loss of the work folder's eval.db: a resume reuses the settings and recomputes the same test
    assert len(doc["item_ids"]) == 4 and all(len(s["outcome_bits"]) == 4 for s in doc["settings"])
    assert [s["outcome_bits"].count("1") for s in doc["settings"]] == [s["correct"] for s in doc["settings"]]
    (tmp_path / "work" / "eval.db").unlink()
    again["mcnemar"] = {}
    # a setting an earlier run skipped stays on record (in its place) when a resume does not redo it
    again["settings"].insert(1, {"name": "base_agent", "skipped": "not run"})
    out.write_text(json.dumps(again))
    run_bench(tmp_path, out, "--resume")
    third = json.loads(out.read_text())
    assert [s["name"] for s in third["settings"]] == ["agent_8", "base_agent", "cot_8"]
    assert [s.get("resumed") for s in third["settings"]] == [True, None, True] and third["mcnemar"] == doc["mcnemar"]


def test_smoke_preset_runs_every_kind_of_setting(whole_plan):
    """The whole smoke plan (sizes, program variants, maj@K votes, SAG, self-training with SFT and REDI,
    the base model): each kind of setting the CPU and GPU presets schedule finishes without error."""
    doc = whole_plan[1]
    settings = {s["name"]: s for s in doc["settings"]}
    assert set(settings) == {"agent_8", "cot_8", "agent_8_x4", "agent_8_maj2", "agent_8_sag2", "agent_8_self_sample", "self_round1_sft",
                             "self_round1_redi", "base_agent", "base_cot"}  # fmt: skip
    assert not [(s["name"], s.get("error") or s.get("skipped")) for s in doc["settings"] if "error" in s or "skipped" in s]
    # the conversion made the variants the plan asks for (3 per problem at most), and says how many admit them
    report = doc["data"]["gold_8_variants_x4"]
    assert report["variants"]["problems"] == 8 and report["variants"]["admitting"] >= 1
    assert 1 <= settings["agent_8_x4"]["variant_trajectories"] <= 3 * report["variants"]["admitting"]
    assert settings["agent_8_x4"]["train_tokens"] > settings["agent_8"]["train_tokens"]
    assert settings["agent_8_maj2"]["votes"] == 2 and settings["self_round1_redi"]["negatives"] >= 0
    assert settings["agent_8_sag2"]["sag"] == 2 and settings["agent_8_sag2"]["items"] == 4
    for pair in ("agent_8_x4 vs agent_8", "agent_8_maj2 vs agent_8", "agent_8_sag2 vs agent_8", "self_round1_redi vs self_round1_sft", "agent_8 vs base_agent"):
        assert doc["mcnemar"][pair]["n"] == 4, pair
