"""``symkd critic train``: train the classifier critic and print its validation metrics.

``register(critic_app)`` adds the command to the ``critic`` sub-app (symkd/cli/critics.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symkd.errors import UserError


def train(
    data: Optional[Path] = typer.Option(
        None, "--data", help="ATOMIC TSV 'head @@ relation<TAB>tail1| tail2' (default: the critic half of shared dev.tsv)"
    ),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="ATOMIC TSV of human-rejected tails (extra negatives)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="artifact folder (default critics/minilm-atomic for dev.tsv)"),
    target_recall: Optional[float] = typer.Option(None, "--target-recall", help="threshold keeps this validation recall (default 0.8)"),
    target_precision: Optional[float] = typer.Option(None, "--target-precision", help="lowest threshold reaching this validation precision"),
    dev_split: Optional[bool] = typer.Option(
        None, "--dev-split/--all-heads", help="use only the critic half of the by-head dev split (default: on for shared dev.tsv)"
    ),
    epochs: int = typer.Option(100, "--epochs", help="L-BFGS iterations for the logistic head"),
    seed: int = typer.Option(13, "--seed", help="seed for the corrupted negatives"),
    negatives: int = typer.Option(2, "--negatives", help="corrupted negatives per human triple"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    """Train the MiniLM classifier critic (human triples vs corrupted ones) and save it with its card."""
    from symkd.pipelines.commonsense.critics.artifact import train_critic
    from symkd.pipelines.commonsense.critics.training import TrainConfig

    if target_recall is not None and target_precision is not None:
        raise UserError("--target-recall and --target-precision: give one, not both")
    for flag, value in (("--target-recall", target_recall), ("--target-precision", target_precision)):
        if value is not None and not 0.0 < value <= 1.0:
            raise UserError(f"{flag}: must be within (0, 1], got {value}")
    if negatives < 1:
        raise UserError(f"--negatives: must be >= 1, got {negatives}")
    cfg = TrainConfig(
        epochs=epochs,
        seed=seed,
        negatives_per_positive=negatives,
        target_recall=None if target_precision is not None else (target_recall or 0.8),
        target_precision=target_precision,
        device=device,
    )
    log = (lambda s: None) if quiet else (lambda s: typer.echo(s, err=True))
    folder, card = train_critic(data, rejects=rejects, out=out, dev_split=dev_split, config=cfg, progress=not quiet, log=log)
    m = card["metrics"]
    typer.echo(f"critic {card['name']} ({card['version']}) -> {folder}")
    typer.echo(f"validation: AUC {m['auc']}, AP {m['ap']}, train AUC {m['train_auc']}; "
               + ", ".join(f"AUC vs {k} {v}" for k, v in m["auc_by_negative_kind"].items()))
    for name, t in card["thresholds"].items():
        typer.echo(f"  {name:7s} threshold {t['threshold']:.4f}: precision {t['precision']}, recall {t['recall']}")
    typer.echo(f"default threshold {card['threshold']:.4f} (target {card['target']})")


def register(critic_app: typer.Typer) -> None:
    """Add ``train`` to the ``critic`` command group."""
    critic_app.command("train")(train)
