"""Render bench/results/agent_acceptance*.json as the tables in BENCHMARKS.md and README.md.

    python bench/acceptance_report.py bench/results/agent_acceptance.json [more.json ...]

Every row comes from a results file (no number is typed by hand): accuracy with its 95 %
Wilson interval, training size and tokens, epochs, wall time and hardware; then the exact
McNemar p-values of each compared pair. The README's table sits between
``<!-- agents-table -->`` and ``<!-- /agents-table -->``; BENCHMARKS.md's section is
``agent_acceptance`` (replaced whole). A person's reading of a results file goes in
``NAME.notes.md`` beside it and is appended under its table: whole in BENCHMARKS.md, its first
paragraph (where things stand) and a link to the rest in the README.
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
        if s.get("sag"):
            extra.append(f"SAG: {s['sag']} sampled actions a step")
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
            "(a maj@K row: K sampled episodes per problem, majority vote on the final answer; a sagK row: "
            "K sampled actions a step, one of the largest group that runs alike kept), "
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


def curve_points(doc: dict[str, Any]) -> dict[str, list[tuple[int, float, float, float, str]]]:
    """Greedy trained students by family (agent, agent + program variants, CoT): (train problems,
    accuracy %, Wilson low %, high %, name) each, in order of size."""
    families: dict[str, list[tuple[int, float, float, float, str]]] = {}
    for s in doc["settings"]:
        if "accuracy" not in s or s.get("votes") or s.get("sag") or not s.get("n_train_problems") or s.get("mode") not in ("agent", "cot"):
            continue
        family = ("CoT student" if s["mode"] == "cot" else "agent + program variants" if s.get("variant_trajectories")
                  else "agent, self-trained" if s["name"].startswith("self_") else "agent student")  # fmt: skip
        lo, hi = s["ci95"]
        families.setdefault(family, []).append((s["n_train_problems"], 100 * s["accuracy"], 100 * lo, 100 * hi, s["name"]))
    return {f: sorted(points) for f, points in families.items()}


def plot(doc: dict[str, Any], out: Path) -> Path:
    """Accuracy (95 % Wilson bars) against training problems, per family, each point named; the base
    model as a line. Written atomically to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    families = sorted(curve_points(doc).items())
    at_size: dict[int, int] = {}  # points already drawn at a size: each next one a little to the right
    for (family, points), marker in zip(families, "osD^v"):
        xs = []
        for p in points:
            xs.append(p[0] * 1.035 ** at_size.get(p[0], 0))
            at_size[p[0]] = at_size.get(p[0], 0) + 1
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(xs, [p[1] for p in points], yerr=err, fmt=marker, capsize=3, label=family)
        for x, p in zip(xs, points):
            ax.annotate(p[4], (x, p[1]), fontsize=6, rotation=30, xytext=(3, 3), textcoords="offset points")
    for s in doc["settings"]:
        if s["name"].startswith("base_") and "accuracy" in s:
            ax.axhline(100 * s["accuracy"], ls="--", lw=0.8, color="grey")
            ax.text(0.99, 100 * s["accuracy"], s["name"], transform=ax.get_yaxis_transform(), ha="right", va="bottom",
                    fontsize=7, color="grey")  # fmt: skip
    ax.set_xscale("log")
    sizes = sorted(at_size)
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.set_xlim(min(sizes) * 0.85, max(sizes) * 1.35)
    ax.minorticks_off()
    ax.set_xlabel("training problems (GSM8K train, first N)")
    ax.set_ylabel(f"solved, % of {doc['n_test']} test problems (95 % Wilson)")
    ax.set_title(f"{doc.get('preset', '')} preset: greedy students on {doc['eval_set']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _notes(path: Path, whole: bool = True) -> str:
    """The reading of a results file, written by a person beside it (``NAME.notes.md``): whole, or
    (for the README) its first paragraph, where it stands, and a link to the rest."""
    notes = path.with_suffix(".notes.md")
    if not notes.is_file():
        return ""
    text = notes.read_text().strip()
    first, _, rest = text.partition("\n\n")
    if whole or not rest.strip():
        return "\n\n" + text
    link = notes.resolve().relative_to(ROOT) if notes.resolve().is_relative_to(ROOT) else notes
    return (f"\n\n{first}\n\nThe dated readings of every setting, the commands that measured them and what "
            f"interrupted them: [{notes.name}]({link}) (also in BENCHMARKS.md).")


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
    pictures = {p: plot(d, Path(p).with_suffix(".png")).resolve().relative_to(ROOT) for p, d in zip(paths, docs)}
    def body(whole: bool) -> str:
        return "\n\n".join(f"### `{Path(p).name}`\n\n![accuracy against training problems]({pictures[p]})\n\n"
                             f"{table(d)}{_notes(Path(p), whole)}" for p, d in zip(paths, docs))  # fmt: skip

    replace_between(ROOT / "README.md", "<!-- agents-table -->", "<!-- /agents-table -->", body(whole=False))
    bench = ("## Agents: acceptance on GSM8K test (`bench/agent_acceptance.py`)\n\n"
             "Rendered by `python bench/acceptance_report.py " + " ".join(paths) + "` from the results JSON.\n\n" + body(whole=True))
    replace_between(ROOT / "BENCHMARKS.md", "<!-- bench:agent_acceptance -->", "<!-- /bench:agent_acceptance -->", bench)
    print(body(whole=False))


if __name__ == "__main__":
    main(sys.argv[1:] or [str(ROOT / "bench" / "results" / "agent_acceptance.json")])
