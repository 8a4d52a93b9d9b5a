"""Rows the students leave in a run DB: ``training_runs`` (one per trained folder), ``evaluations``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from symkd.store.db import Store, opened, utcnow


def record_training(db: str | Path | Store, summary: dict[str, Any], out: str | Path, round: int | None = None) -> str:
    """Upsert the training summary (history left out: it is in ``OUT/training.json``)."""
    config = summary["config"]
    out_dir = str(Path(out).resolve())
    # config + data + folder + round: a resumed or repeated run keeps its row, another folder or round gets its own
    key = json.dumps([summary["fingerprint"], out_dir, round])
    run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    row = {
        "id": run_id,
        "out_dir": out_dir,
        "base_model": config["base_model"],
        "round": round,
        "config": json.dumps(config),
        "data": json.dumps({k: v for k, v in summary["data"].items() if not k.startswith("example_")}),
        "steps": summary["steps"],
        "train_loss": summary["final"]["train_loss"],
        "eval_loss": summary["final"]["eval_loss"],
        "tokens_per_s": summary["throughput"]["tokens_per_s"],
        "hardware": summary["hardware"]["description"],
        "created_at": utcnow(),
    }
    upsert_row(db, "training_runs", row)
    return run_id


def upsert_row(db: str | Path | Store, table: str, row: dict[str, Any], pk: str = "id") -> None:
    """Insert or replace one row in a store given as a path or an open Store."""
    with opened(db) as store, store.transaction() as conn:
        conn[table].upsert(row, pk=pk)
