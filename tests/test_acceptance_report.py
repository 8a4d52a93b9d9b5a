"""bench/acceptance_report.py: the README and BENCHMARKS agent tables come from the results JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("acceptance_report", ROOT / "bench" / "acceptance_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_the_committed_record_renders_every_setting_and_paired_test():
    doc = json.loads((ROOT / "bench" / "results" / "agent_acceptance.json").read_text())
    text = report.table(doc)
    for s in doc["settings"]:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {s['name']} |"))
        if "accuracy" in s:
            assert f"({s['correct']}/{s['items']})" in line and f"{s['ci95'][0]:.3f}" in line
    for pair, t in doc["mcnemar"].items():
        assert f"- {pair}: only-first {t['a_only']}, only-second {t['b_only']}" in text


def test_a_variants_setting_and_its_conversion_are_reported():
    setting = {"name": "agent_250_x4", "mode": "agent", "accuracy": 0.02, "ci95": [0.01, 0.04], "correct": 10, "items": 500,
               "n_train_problems": 250, "train_tokens": 500000, "epochs": 2.0, "seconds": 100.0, "variant_trajectories": 460}
    conversion = {"tasks": 250, "converted": 234, "variants": {"problems": 250, "admitting": 170, "share": 0.68,
                                                                "variants": 460, "skipped": {"no numbers map": 80}}}
    doc = {"hardware": "cpu", "eval_set": "first 500", "n_test": 500, "preset": "cpu", "settings": [setting],
           "mcnemar": {}, "data": {"gold_250_variants_x4": conversion}}  # fmt: skip
    text = report.table(doc)
    assert "| agent_250_x4 | agent | 0.020 (10/500) [0.010, 0.040] | 250 | 500,000 | 2.00 |" in text
    assert "460 variant trajectories" in text
    assert "234 of 250 train problems converted" in text and "170 of 250 problems (68%) admit program variants" in text
    assert "no variant: no numbers map 80" in text


def test_settings_measured_on_other_machines_are_named_in_the_header():
    base = {"mode": "agent", "accuracy": 0.02, "ci95": [0.01, 0.04], "correct": 10, "items": 500, "seconds": 1.0}
    settings = [{**base, "name": "a", "hardware": "AMD"}, {**base, "name": "b", "hardware": "AMD"},
                {**base, "name": "c", "hardware": "Intel"}]  # fmt: skip
    doc = {"hardware": "Intel", "eval_set": "first 500", "n_test": 500, "preset": "cpu", "settings": settings, "mcnemar": {}, "data": {}}
    assert report.table(doc).startswith("Hardware: AMD (the other settings: Intel for c).")
    doc["settings"] = settings[:2]
    assert report.table(doc).startswith("Hardware: AMD.")


def test_the_scale_picture_has_every_greedy_trained_student(tmp_path):
    doc = json.loads((ROOT / "bench" / "results" / "agent_acceptance.json").read_text())
    drawn = {p[4] for points in report.curve_points(doc).values() for p in points}
    trained = {s["name"] for s in doc["settings"] if "accuracy" in s and s.get("n_train_problems") and not s.get("votes")}
    assert drawn == trained and trained
    out = report.plot(doc, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp.png"))


def test_the_readme_gets_where_it_stands_and_a_link_while_benchmarks_gets_every_reading(tmp_path):
    """A results file's notes grow with every session: the README keeps the first paragraph (where
    the goals stand) and links the rest; BENCHMARKS.md keeps them whole."""
    results = tmp_path / "run.json"
    results.write_text("{}")
    results.with_suffix(".notes.md").write_text("**Where it stands.** Missed.\n\n**Reading (day 1).** Details.\n")
    short, whole = report._notes(results, whole=False), report._notes(results)
    assert "**Where it stands.** Missed." in short and "Details" not in short
    assert "[run.notes.md](" in short and str(results.with_suffix(".notes.md")) in short
    assert "Missed." in whole and "**Reading (day 1).** Details." in whole
    results.with_suffix(".notes.md").write_text("**Where it stands.** Only this.\n")
    assert report._notes(results, whole=False) == "\n\n**Where it stands.** Only this."
