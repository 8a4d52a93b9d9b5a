"""``symkd train`` (a pipeline evaluates its students itself: ``symkd commonsense eval``,
``symkd agent eval``).

    symkd train --db run.db --critics rules,dedupe,classifier --out students/s1 --epochs 3
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from symkd.commandline import build, model_options
from symkd.students.train import TrainConfig


def _critics(values: Optional[List[str]]) -> list[str]:
    return list(dict.fromkeys(c.strip() for v in values or [] for c in v.split(",") if c.strip()))


def _source(data: Optional[Path], db: Optional[Path]) -> Path:
    """--data FILE or --db RUN.db (a run DB given to --data works too)."""
    from symkd.errors import UserError

    if (data is None) == (db is None):
        raise UserError("give --data FILE or --db RUN.db (one of them)")
    return data if data is not None else db


@model_options(TrainConfig, "train_options", exclude=("out",), aliases={"base_model": ["-m"]}, rename={"teacher_model": "--teacher"})
def train_cmd(
    data: Optional[Path] = typer.Option(None, "--data", help="training file: ATOMIC .tsv or .jsonl (triples, prompt/completion or chat)"),
    db: Optional[Path] = typer.Option(None, "--db", help="train on a run DB's curated triples instead of --data"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the trained model (checkpoints inside; rerun to resume)"),
    critic: Optional[List[str]] = typer.Option(None, "--critics", help="DB: only triples these critics kept (repeatable or comma list)"),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="DB: each of --critics' scores >= X instead of its decision"),
    rounds: Optional[str] = typer.Option(None, "--rounds", help="DB: only triples of these rounds, e.g. 0 or 0,1"),
    relations: Optional[str] = typer.Option(None, "--relations", help="DB: comma list of relations or groups"),
    limit: Optional[int] = typer.Option(None, "--limit", help="DB: at most N triples (a seeded random sample)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what --out holds"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    train_options: Any = None,
) -> None:
    """Fine-tune a student on curated knowledge (loss on the tail tokens only)."""
    from symkd.graphs.relations import parse_relations
    from symkd.errors import UserError
    from symkd.students.data import load_data
    from symkd.students.train import train

    try:
        round_list = [int(r) for r in rounds.split(",")] if rounds else []
    except ValueError:
        raise UserError(f"--rounds {rounds!r}: expected comma-separated integers") from None
    data = _source(data, db)
    options = {}
    if data.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        options = {"critics": _critics(critic), "min_score": min_score, "rounds": round_list,
                   "relations": parse_relations(relations) if relations else [], "limit": limit,
                   "seed": train_options.get("seed", 0)}  # fmt: skip
    elif critic or min_score is not None or rounds or relations or limit:
        raise UserError(f"{data}: --critics/--min-score/--rounds/--relations/--limit apply to a run DB only (--db RUN.db)")
    config = build(TrainConfig, {**train_options, "out": out})
    corpus = load_data(data, **options)
    summary = train(corpus, config, progress=not quiet, overwrite=overwrite)
    from symkd.students.distributed import is_main_process

    if not is_main_process():  # under torchrun / accelerate launch only rank 0 records and reports
        return
    if corpus.source.get("kind") == "db":
        from symkd.students.records import record_training

        record_training(data, summary, out)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}))
        return
    final, speed = summary["final"], summary["throughput"]
    held = f", held-out loss {final['eval_loss']:.4f}" if final["eval_loss"] is not None else ""
    typer.echo(f"trained {summary['steps']} steps on {summary['data']['train_examples']} examples: "
               f"train loss {final['train_loss']:.4f}{held}; {speed['tokens_per_s']:.0f} tokens/s -> {out}")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
