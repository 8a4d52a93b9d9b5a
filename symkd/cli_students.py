"""``symkd train`` and ``symkd eval commonsense``: students from the distilled corpus, and their scores.

    symkd train --data run.db --critic rules,dedupe,classifier --out students/s1 --epochs 3
    symkd eval commonsense --model students/s1 --data dev.tsv --split eval --out scores.json
    symkd eval commonsense --teacher smollm2 --data dev.tsv --split eval --out teacher.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

eval_app = typer.Typer(help="Evaluate students and teachers.", no_args_is_help=True)


def _critics(values: Optional[List[str]]) -> list[str]:
    return list(dict.fromkeys(c.strip() for v in values or [] for c in v.split(",") if c.strip()))


def train_cmd(
    data: Path = typer.Option(..., "--data", help="run DB (.db), ATOMIC .tsv, or .jsonl (triples, prompt/completion or chat)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the trained model (checkpoints inside; rerun to resume)"),
    base_model: str = typer.Option("smollm2", "--base-model", "-m", help="HF id, folder or .gguf file; smollm2 = embedded"),
    critic: Optional[List[str]] = typer.Option(None, "--critic", help="DB: only triples these critics kept (repeatable or comma list)"),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="DB: each --critic's score >= X instead of its decision"),
    rounds: Optional[str] = typer.Option(None, "--rounds", help="DB: only triples of these rounds, e.g. 0 or 0,1"),
    relations: Optional[str] = typer.Option(None, "--relations", help="DB: comma list of relations or groups"),
    limit: Optional[int] = typer.Option(None, "--limit", help="DB: at most N triples (a seeded random sample)"),
    epochs: float = typer.Option(3.0, "--epochs", help="passes over the data (fractions allowed)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="optimizer steps (overrides --epochs)"),
    batch_size: int = typer.Option(16, "--batch-size", help="examples per micro-batch"),
    grad_accum: int = typer.Option(1, "--grad-accum", help="micro-batches per optimizer step"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default 5e-5; 2e-4 with --lora)"),
    max_length: int = typer.Option(128, "--max-length", help="longest example in tokens (longer ones are left out)"),
    eval_fraction: float = typer.Option(0.05, "--eval-fraction", help="held-out share, split by head"),
    lora: bool = typer.Option(False, "--lora", help="train LoRA adapters (merged into the saved model)"),
    lora_r: int = typer.Option(16, "--lora-r", help="LoRA rank"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    seed: int = typer.Option(0, "--seed"),
    kd_loss: Optional[str] = typer.Option(None, "--kd-loss", help="white-box KD: forward_kl, reverse_kl, skew_forward_kl, skew_reverse_kl, jsd, taid (name:opt=v)"),
    teacher_model: Optional[str] = typer.Option(None, "--teacher-model", help="local teacher for --kd-loss (same tokenizer)"),
    kd_weight: float = typer.Option(0.5, "--kd-weight", help="loss = (1-w)·CE + w·KD"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what --out holds"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Fine-tune a student on curated knowledge (loss on the tail tokens only)."""
    from symkd.commonsense.relations import parse_relations
    from symkd.errors import UserError
    from symkd.students.data import load_data
    from symkd.students.train import TrainConfig, train

    try:
        round_list = [int(r) for r in rounds.split(",")] if rounds else []
    except ValueError:
        raise UserError(f"--rounds {rounds!r}: expected comma-separated integers") from None
    options = {}
    if data.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        options = {"critics": _critics(critic), "min_score": min_score, "rounds": round_list,
                   "relations": parse_relations(relations) if relations else [], "limit": limit, "seed": seed}  # fmt: skip
    elif critic or min_score is not None or rounds or relations or limit:
        raise UserError(f"{data}: --critic/--min-score/--rounds/--relations/--limit apply to a run DB only")
    config = TrainConfig.model_validate(dict(
        out=out, base_model=base_model, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        lr=lr, max_length=max_length, eval_fraction=eval_fraction, lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r,
        device=device, seed=seed, kd_loss=kd_loss, teacher_model=teacher_model, kd_weight=kd_weight))  # fmt: skip
    corpus = load_data(data, **options)
    summary = train(corpus, config, progress=not quiet, overwrite=overwrite)
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


@eval_app.command("commonsense")
def eval_commonsense(
    data: Path = typer.Option(..., "--data", help="ATOMIC-format TSV: head @@ relation<TAB>tail1| tail2"),
    model: Optional[Path] = typer.Option(None, "--model", help="student folder (from symkd train)"),
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="evaluate a teacher few-shot instead: smollm2, openai:MODEL, ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the scores as JSON"),
    split: str = typer.Option("all", "--split", help="all | eval | critic (halves of the dev split by head)"),
    save_generations: Optional[Path] = typer.Option(None, "--save-generations", help="JSONL of {head, relation, prediction}"),
    beams: int = typer.Option(1, "--beams", help="1 = greedy; N = beam search"),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens"),
    batch_size: int = typer.Option(32, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    lowercase: bool = typer.Option(False, "--lowercase", help="lowercase both sides (COMET's earlier script)"),
    db: Optional[Path] = typer.Option(None, "--db", help="record the scores here (and cache a teacher's answers)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (teacher)"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="env var holding the API key (teacher)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """COMET-ATOMIC2020 scores (BLEU-1..4, ROUGE-L, CIDEr), overall and per relation."""
    from symkd.students.evaluate.commonsense import evaluate_commonsense

    report = evaluate_commonsense(
        data, model=model, teacher=teacher, split=split, num_beams=beams, max_new_tokens=max_new_tokens,
        batch_size=batch_size, device=device, lowercase=lowercase, db=db, out=out,
        save_generations=save_generations, progress=not quiet,
        teacher_options={"base_url": base_url, "api_key_env": api_key_env},
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report))
        return
    print_scores(report)
    if out is not None:
        typer.echo(f"-> {out}")


def print_scores(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from symkd.students.evaluate.metrics import METRICS

    table = Table("relation", "lines", *METRICS, title=f"{report['model']} on {report['data']['file']} ({report['data']['split']})",
                  title_justify="left")  # fmt: skip
    counts = report["counts"]["per_relation"]
    for relation, scores in report["per_relation"].items():
        table.add_row(relation, str(counts[relation]), *(f"{scores[m]:.4f}" for m in METRICS))
    table.add_row("[bold]overall", f"[bold]{report['counts']['total']}", *(f"[bold]{report[m]:.4f}" for m in METRICS))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.add_typer(eval_app, name="eval")
