"""The gold trajectories an agent_acceptance plan needs: converted once, extended when a plan needs more.

A gold DB converted for a smaller plan (its first 250 problems) is extended, not silently used for
1,000: the bench records what it converted in the DB's meta table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from symkd.store.db import Store

#: meta key of the gold DB: the problems and variants it was converted for ({"limit": N | null, "variants": K})
GOLD_MARK = "bench:gold_converted"
SIZED = ("size", "variants", "self", "epochs")  # plan items whose first field is a number of train problems


def gold_for_plan(run: Any, plan: list[str]) -> None:
    """Convert the gold trajectories the plan's sized items need, unless the gold DB already covers them.

    A gold DB converted for a smaller plan (its first 250 problems) is extended, not silently
    used for 1,000: the bench records what it converted in the DB's meta table; a DB without
    that mark (made with the CLI) is converted again for the plan's size (rows are upserted).
    """
    args, p = run.args, run.preset
    sizes = [item.split(":")[1] for item in plan if item.split(":")[0] in SIZED]
    if args.gold_db.is_file() and not sizes:
        return  # eval:, votes: and base items train nothing new from gold data
    largest = None if "all" in sizes else max([int(x) for x in sizes] or [max(p["sizes"])])
    factors = [int(item.split(":")[2]) for item in plan if item.startswith("variants")]
    wanted = {"limit": largest, "variants": max(factors, default=1) - 1}
    if args.gold_db.is_file() and _covers(_converted_for(args.gold_db), wanted):
        return
    key = f"gold_{largest or 'all'}_variants_x{max(factors)}" if factors else "gold"
    report = pipeline_convert(args, largest, factors)
    if report["tasks"] >= (run.doc["data"].get(key) or {}).get("tasks", 0):  # a record of more problems keeps its own
        run.doc["data"][key] = report  # and a resumed record the other keys
    with Store(args.gold_db) as store, store.transaction() as db:
        db["meta"].upsert({"key": GOLD_MARK, "value": json.dumps(wanted)}, pk="key")


def _converted_for(db: Path) -> dict[str, Any] | None:
    with Store(db) as store:
        value = store.scalar("select value from meta where key = ?", (GOLD_MARK,)) if store.db["meta"].exists() else None
    return json.loads(value) if value else None


def _covers(done: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if done is None:
        return False
    size_ok = done["limit"] is None or (wanted["limit"] is not None and done["limit"] >= wanted["limit"])
    return size_ok and done["variants"] >= wanted["variants"]


def pipeline_convert(args: argparse.Namespace, limit: int | None, factors: list[int]) -> dict[str, Any]:
    """``symkd agent generate --source gold-rationales --data train.jsonl --db GOLD [--variants K]``."""
    from symkd.pipelines.agents import pipeline

    options: dict[str, Any] = {"limit": limit, "sandbox": args.sandbox, "progress": False}
    if factors:
        options.update(variants=max(factors) - 1, exclude=args.test_file)
    return pipeline.convert_gold_rationales(args.gold_db, args.data_dir / "train.jsonl", **options)
