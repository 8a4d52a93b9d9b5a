"""Render bench/results/agent_acceptance*.json as the tables in BENCHMARKS.md and README.md.

    python bench/acceptance_report.py bench/results/agent_acceptance.json [more.json ...]

Every row comes from a results file (no number is typed by hand): accuracy with its 95 %
Wilson interval, training size and tokens, epochs, wall time and hardware; then the exact
McNemar p-values of each compared pair. The README's table sits between
``<!-- agents-table -->`` and ``<!-- /agents-table -->``; BENCHMARKS.md's section is
``agent_acceptance`` (replaced whole). A person's reading of a results file goes in
``NAME.notes.md`` beside it and is appended under its table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _fmt_acc(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['accuracy']:.3f} ({s['correct']}/{s['items']}) [{lo:.3f}, {hi:.3f}]"


def rows(doc: dict[str, Any]) -> list[str]:
    out = []
    for s in doc["settings"]:
        if "accuracy" not in s:
            why = s.get("skipped") or (s.get("error") or "")[:80] or "sampling step"
            if "sampled" in s:
                why = f"sampled {s['sampled']} episodes on {s['problems']} train problems, {s['correct']} correct"
            out.append(f"| {s['name']} | - | - | - | - | - | {why} |")
            continue
        tokens = f"{s['train_tokens']:,}" if s.get("train_tokens") else "-"
        extra = [f"answered {s.get('answered_rate', 0):.2f}"]
        if s.get("variant_trajectories"):
            extra.append(f"{s['variant_trajectories']:,} variant trajectories")
        if s.get("votes"):
            extra.append(f"mean sample {s.get('sample_accuracy', 0):.3f}, pass@{s['votes']} {s.get('pass_at_k', 0):.3f}")
        if s.get("eval_dtype"):
            extra.append(f"evaluated in {s['eval_dtype']}")
        if s.get("retrained"):
            again = "same tokens and loss" if s["retrained"].get("same_as_recorded") else "a DIFFERENT training"
            extra.append(f"retrained in a later session ({again})")
        if s.get("parse_error_rate") is not None:
            extra.append(f"parse err {s['parse_error_rate']:.2f}")
        if s.get("tokens_per_s"):
            extra.append(f"{s['tokens_per_s']:,.0f} train tok/s" + (f", MFU {s['mfu']:.1%}" if s.get("mfu") else ""))
        epochs = f"{s['epochs']:.2f}" if s.get("epochs") else "-"
        out.append(f"| {s['name']} | {s.get('mode', '-')} | {_fmt_acc(s)} | {s.get('n_train_problems', '-')} | {tokens} | "
                   f"{epochs} | {s['seconds']:.0f} s; {'; '.join(extra)} |")  # fmt: skip
    return out


def _total_seconds(doc: dict[str, Any]) -> float:
    return sum(s.get("seconds", 0) for s in doc.get("settings", []))


def data_lines(doc: dict[str, Any]) -> str:
    """Each gold conversion the record holds: how many problems converted, and admitted program variants."""
    out = []
    for key, c in sorted(doc.get("data", {}).items()):
        line = f"- `{key}`: {c['converted']:,} of {c['tasks']:,} train problems converted to verified trajectories"
        v = c.get("variants")
        if v:
            skipped = ", ".join(f"{why} {n}" for why, n in v.get("skipped", {}).items())
            line += (f"; {v['admitting']:,} of {v['problems']:,} problems ({v['share']:.0%}) admit program variants, "
                     f"{v['variants']:,} variants made" + (f" (no variant: {skipped})" if skipped else ""))  # fmt: skip
        out.append(line)
    return "\n\nGold data:\n" + "\n".join(out) if out else ""


def table(doc: dict[str, Any]) -> str:
    head = ("| setting | mode | accuracy (k/n) [95 % Wilson] | train problems | train tokens | epochs | notes |\n"
            "|---|---|---|---|---|---|---|\n")  # fmt: skip
    tests = "\n".join(f"- {pair}: only-first {t['a_only']}, only-second {t['b_only']}, exact McNemar p = {t['p_value']:.4g}"
                      for pair, t in doc.get("mcnemar", {}).items())  # fmt: skip
    return (f"Hardware: {_hardware(doc)}. Evaluation: {doc['eval_set']} (n = {doc['n_test']}), greedy "
            "(a maj@K row: K sampled episodes per problem, majority vote on the final answer), "
            f"preset `{doc['preset']}`, {_total_seconds(doc):.0f} s of training and evaluation in all "
            "(the settings' own times, summed over the sessions that ran them).\n\n" + head + "\n".join(rows(doc))
            + data_lines(doc) + ("\n\nPaired tests (same problems):\n" + tests if tests else ""))  # fmt: skip


def _hardware(doc: dict[str, Any]) -> str:
    """The record's machine, or each machine with the settings measured on it when sessions differed."""
    machines: dict[str, list[str]] = {}
    for setting in doc.get("settings", []):
        if setting.get("hardware"):
            machines.setdefault(setting["hardware"], []).append(setting["name"])
    if len(machines) <= 1:
        return next(iter(machines), doc["hardware"])
    most = max(machines, key=lambda m: len(machines[m]))
    others = "; ".join(f"{m} for {', '.join(names)}" for m, names in machines.items() if m != most)
    return f"{most} (the other settings: {others})"


def _notes(path: Path) -> str:
    """The reading of a results file, written by a person beside it (``NAME.notes.md``)."""
    notes = path.with_suffix(".notes.md")
    return "\n\n" + notes.read_text().strip() if notes.is_file() else ""


def replace_between(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    new = f"{start}\n{body}\n{end}"
    text = pattern.sub(lambda _: new, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + new + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(paths: list[str]) -> None:
    docs = [json.loads(Path(p).read_text()) for p in paths]
    body = "\n\n".join(f"### `{Path(p).name}`\n\n{table(d)}{_notes(Path(p))}" for p, d in zip(paths, docs))
    replace_between(ROOT / "README.md", "<!-- agents-table -->", "<!-- /agents-table -->", body)
    bench = ("## Agents: acceptance on GSM8K test (`bench/agent_acceptance.py`)\n\n"
             "Rendered by `python bench/acceptance_report.py " + " ".join(paths) + "` from the results JSON.\n\n" + body)
    replace_between(ROOT / "BENCHMARKS.md", "<!-- bench:agent_acceptance -->", "<!-- /bench:agent_acceptance -->", bench)
    print(body)


if __name__ == "__main__":
    main(sys.argv[1:] or [str(ROOT / "bench" / "results" / "agent_acceptance.json")])
