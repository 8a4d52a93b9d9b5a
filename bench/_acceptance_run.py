"""The agent acceptance bench's result document: settings written atomically as they finish,
resumed from an earlier record (``--resume``), paired with McNemar tests."""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import _acceptance_steps as steps

from symkd.stats import mcnemar_exact


class Run:
    """The result document, written atomically after every setting (and copied to $OUT when set)."""

    def __init__(self, args: argparse.Namespace, preset: dict[str, Any], config: dict[str, Any] | None = None) -> None:
        self.args, self.preset, self.started = args, preset, time.monotonic()
        self.students: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, dict[str, bool]] = {}
        self.doc: dict[str, Any] = {
            "n_test": preset["test"], "eval_set": f"first {preset['test']} problems of GSM8K test.jsonl",
            "preset": args.preset, "config": config or preset, "hardware": steps.hardware(args.device), "settings": [],
            "mcnemar": {}, "data": {}}  # fmt: skip
        self.previous: dict[str, dict[str, Any]] = {}
        self.reused: dict[str, tuple[dict[str, Any], dict[str, bool] | None]] = {}  # --retrain: evaluation to keep
        self.earlier: list[dict[str, Any]] = []  # every setting of the previous document, in order
        self.earlier_seconds = 0.0  # the wall time of the runs that wrote the previous document
        if args.resume and args.out.is_file():
            old = json.loads(args.out.read_text())
            self.earlier, self.earlier_seconds = old.get("settings", []), float(old.get("seconds") or 0)
            self.previous = {r["name"]: r for r in self.earlier if "error" not in r and "skipped" not in r}
            self.doc.update(data=old.get("data", {}), mcnemar=old.get("mcnemar", {}))
            if old.get("item_ids"):
                self.doc["item_ids"] = old["item_ids"]

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def save(self) -> None:
        self.doc["seconds"] = round(self.earlier_seconds + self.elapsed(), 1)
        text = json.dumps({**self.doc, "settings": self.all_settings()}, indent=2, default=str) + "\n"
        targets = [self.args.out] + ([Path(os.environ["OUT"]) / self.args.out.name] if os.environ.get("OUT") else [])
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(target)

    def resumed(self, name: str) -> bool:
        """Reuse a finished setting of the previous document (``--resume``): record, student, outcomes."""
        record = self.previous.get(name)
        if not record or "evaluation_id" not in record:
            return False
        outcome = self.previous_outcome(record)
        if outcome is None and not self.args.keep_lost:
            return False
        if self.needs_retraining(record):
            self.reused[name] = (record, outcome)  # trained again, its evaluation kept
            return False
        if outcome is not None:
            self.outcomes[name] = outcome
        else:
            record = {**record, "note": "per-item predictions lost with the work folder: no paired test with it"}
        if record.get("train_tokens"):
            self.students[name] = record
        self.doc["settings"].append({**record, "resumed": True})
        print(json.dumps({"name": name, "resumed": record["evaluation_id"]}), flush=True)
        self.save()
        return True

    def needs_retraining(self, record: dict[str, Any]) -> bool:
        """``--retrain``: a finished student whose weights are not in ``--work`` (a new machine) is
        trained again, so a later plan item (votes, eval, self) can use it."""
        folder = self.args.work / record["name"]
        return bool(getattr(self.args, "retrain", False) and record.get("train_tokens")
                    and not (folder / "config.json").is_file())  # fmt: skip

    def retrained(self, name: str, info: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded setting with a note on its retraining (None: not a retrained setting). Training is
        seeded and the data identical, but a CPU retraining is not always bitwise the same (agent_250_x4's
        final loss moved in the 4th digit, agent_250's did not; likely the order of reductions):
        ``same_as_recorded`` is strict, and the relative loss difference is recorded beside it."""
        if name not in self.reused:
            return None
        record, outcome = self.reused.pop(name)
        if outcome is not None:
            self.outcomes[name] = outcome
        same = info.get("train_tokens") == record.get("train_tokens") and info.get("final_loss") == record.get("final_loss")
        new_loss, old_loss = ((x.get("final_loss") or {}).get("train_loss") for x in (info, record))
        drift = round(abs(new_loss - old_loss) / old_loss, 6) if new_loss and old_loss else None
        kept = {k: v for k, v in record.items() if k not in ("name", "outcome_bits", "resumed", "retrained")}
        return {**kept, "retrained": {"train_tokens": info.get("train_tokens"), "final_loss": info.get("final_loss"),
                                      "train_seconds": info.get("train_seconds"), "same_as_recorded": same,
                                      "loss_relative_difference": drift}}  # fmt: skip

    def previous_outcome(self, record: dict[str, Any]) -> dict[str, bool] | None:
        """Task -> correct of a finished setting: from the bits the JSON keeps, else from eval.db.
        The bits first: they are this setting's own, while eval.db may hold another run under the same
        id (records written before evaluation ids included the dtype and the weights' digest)."""
        ids, bits = self.doc.get("item_ids") or [], record.get("outcome_bits")
        if bits and len(bits) == len(ids):
            return {i: b == "1" for i, b in zip(ids, bits)}
        db = self.args.work / "eval.db"
        if db.is_file():
            with steps.Store(db) as store:
                rows = steps.read_predictions(store, record["evaluation_id"])
            if rows:
                return steps.paired_outcomes(rows)
        return None

    def all_settings(self) -> list[dict[str, Any]]:
        """This run's settings, after the previous document's ones it did not redo (``--resume``;
        a setting that failed or was skipped there stays on record until a run redoes it)."""
        redone = {r["name"]: r for r in self.doc["settings"]}
        earlier = [redone.pop(r["name"], r) for r in self.earlier]  # in the previous document's order
        return earlier + list(redone.values())

    def keep_outcome(self, name: str, record: dict[str, Any]) -> None:
        """Store a setting's per-item results as a bit string over the sorted evaluation ids."""
        outcome = self.outcomes.get(name)
        if not outcome:
            return
        ids = self.doc.setdefault("item_ids", sorted(outcome))
        if set(ids) == set(outcome):
            record["outcome_bits"] = "".join("1" if outcome[i] else "0" for i in ids)

    def setting(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Run one setting unless past the deadline; a failure is recorded, never fatal."""
        if self.resumed(name):
            return
        if self.elapsed() > self.args.deadline_s:
            self.doc["settings"].append({"name": name, "skipped": f"deadline ({self.args.deadline_s:.0f} s) passed"})
            return self.save()
        started = time.monotonic()
        try:
            record = {"name": name, **fn()}
        except Exception as exc:  # noqa: BLE001 - one failed setting must not lose the others
            record = {"name": name, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        earlier = record.pop("earlier_seconds", 0) or 0  # training done by killed processes before this one
        if "retrained" not in record:  # a retrained setting keeps its recorded time and machine
            record.update(seconds=round(time.monotonic() - started + earlier, 1), hardware=self.doc["hardware"])
        self.keep_outcome(name, record)
        self.doc["settings"].append(record)
        print(json.dumps({k: v for k, v in record.items() if k != "trace"}, default=str), flush=True)
        self.save()

    def outcome(self, name: str) -> dict[str, bool] | None:
        """A setting's per-item results: this run's, else the previous document's (``--resume``),
        so a run of one setting is compared with settings that an earlier run measured."""
        if name not in self.outcomes and name in self.previous:
            found = self.previous_outcome(self.previous[name])
            if found is not None:
                self.outcomes[name] = found
        return self.outcomes.get(name)

    def compare(self, a: str, b: str) -> None:
        first, second = self.outcome(a), self.outcome(b)
        if first is not None and second is not None:
            ids = sorted(set(first) & set(second))
            test = mcnemar_exact([first[i] for i in ids], [second[i] for i in ids])
            self.doc["mcnemar"][f"{a} vs {b}"] = {**test, "n": len(ids)}
            self.save()
