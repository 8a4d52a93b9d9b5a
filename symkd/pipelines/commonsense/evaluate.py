"""``symkd commonsense eval``: a student (or a teacher, few-shot) on an ATOMIC-format TSV.

The COMET-ATOMIC2020 protocol: one generation per (head, relation) line, scored against every
reference of that line (:mod:`.metrics`). A student answers the COMET prompt of
:func:`symkd.pipelines.commonsense.comet.comet_prompt` greedily (or with beams); a teacher answers the same
few-shot per-relation prompt it distils with, at temperature 0, through the request cache
(``db``), and an answer with no usable tail counts as ``"none"``.

``split`` picks a part of the file by head: ``eval`` / ``critic`` are the two halves of
:func:`symkd.pipelines.commonsense.atomic.dev_split` (the bundled critic was trained on ``critic``, so
report on ``eval``); ``all`` takes every line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

from symkd.pipelines.commonsense.atomic import AtomicLine, describe_lines, dev_split, read_atomic_tsv
from symkd.errors import UserError
from symkd.pipelines.commonsense.config import SPLITS, EvalConfig, settings
from symkd.results import DictAccess
from symkd.pipelines.commonsense.comet import comet_prompt
from symkd.pipelines.commonsense.metrics import METRICS, score_by_relation


def select_lines(data: str | Path, split: str = "all") -> list[AtomicLine]:
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    lines = read_atomic_tsv(data)
    if split == "all":
        return lines
    critic, evaluation = dev_split(lines)
    return evaluation if split == "eval" else critic


def student_predictions(model_dir: str | Path, lines: Sequence[AtomicLine], *, num_beams: int = 1,
                        max_new_tokens: int = 24, batch_size: int = 32, device: str = "auto",
                        progress: bool = True) -> list[str]:  # fmt: skip
    from symkd.students.generate import generate_texts
    from symkd.students.modeling import load_causal_lm, pick_device

    path = Path(model_dir)
    if not path.exists():
        raise UserError(f"{path}: no such model folder")
    if path.is_dir() and not (path / "config.json").exists():
        raise UserError(f"{path}: not a model folder (no config.json; is training finished?)")
    dev, dtype, _ = pick_device(device)
    loaded = load_causal_lm(str(path), device=dev, dtype=dtype, train=False)
    prompts = [comet_prompt(ln.head, ln.relation) for ln in lines]
    return generate_texts(loaded.model, loaded.tokenizer, prompts, num_beams=num_beams, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, progress=progress, desc="student")  # fmt: skip


def teacher_predictions(teacher: str, lines: Sequence[AtomicLine], store: Any, *, progress: bool = True,
                        teacher_options: dict[str, Any] | None = None) -> list[str]:  # fmt: skip
    from symkd.pipelines.commonsense.inferences import TailStage, parse_tail
    from symkd.generation import generate
    from symkd.teachers.options import as_options

    requests, names, stage = [], [], TailStage(seed=0, samples=1)
    for i, ln in enumerate(lines):
        request, used = stage.request(ln.head, ln.relation), stage.names(ln.head)
        params = request.params.model_copy(update={"temperature": 0.0, "n": 1, "seed": 0})
        requests.append(request.model_copy(update={"id": f"eval:{i}:{ln.relation}:{ln.head}", "params": params}))
        names.append(used)
    options = as_options(teacher_options).given()
    # grouped by relation: consecutive requests share a template, so a local teacher reuses the prompt prefix
    by_relation = sorted(requests, key=lambda r: r.template_id or "")
    result = generate(teacher, by_relation, store, kind="eval-commonsense", progress=progress, **options)
    if result.failed:
        raise UserError(f"{result.failed} teacher request(s) failed; rerun to retry (answers so far are cached)")
    found = result.responses()
    out = []
    for request, used in zip(requests, names):
        response = found.get(request.id)
        text = response.completions[0].text if response is not None and response.completions else ""
        tail, _ = parse_tail(text, used) if text.strip() else (None, "empty")
        out.append(tail or "none")
    return out


def evaluate_commonsense(
    data: str | Path,
    config: EvalConfig | dict[str, Any] | None = None,
    *,
    model: str | Path | None = None,
    teacher: str | None = None,
    db: str | Path | None = None,
    out: str | Path | None = None,
    save_generations: str | Path | None = None,
    round: int | None = None,
    progress: bool = True,
    teacher_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> EvaluationResult:
    """Score a student folder (``model``) or a teacher spec (``teacher``); return the report.

    ``config`` is an :class:`EvalConfig`; ``overrides`` are its fields as keywords (``split``,
    ``num_beams``, ``max_new_tokens``, ``batch_size``, ``device``, ``lowercase``).
    ``out`` gets the report as JSON, ``save_generations`` one ``{head, relation, prediction}``
    object per line (both written atomically); with ``db`` the scores are also recorded in its
    ``evaluations`` table (and a teacher's answers are cached there).
    """
    if (model is None) == (teacher is None):
        raise UserError("evaluate either a student (--model DIR) or a teacher (--teacher SPEC)")
    config = settings(EvalConfig, config, overrides)
    for target in (out, save_generations):
        if target is not None and not Path(target).parent.exists():
            raise UserError(f"{target}: folder {Path(target).parent} does not exist")
    lines = select_lines(data, config.split)
    if model is not None:
        preds = student_predictions(model, lines, num_beams=config.num_beams, max_new_tokens=config.max_new_tokens,
                                    batch_size=config.batch_size, device=config.device, progress=progress)  # fmt: skip
        who, decoding = str(model), {"num_beams": config.num_beams, "max_new_tokens": config.max_new_tokens}
    else:
        preds = _teacher_predictions(teacher, lines, db, progress, teacher_options)  # type: ignore[arg-type]
        who, decoding = str(teacher), {"few_shot": True, "temperature": 0.0}  # specs hold no keys (those come from env vars)
    rows = [{"head": ln.head, "relation": ln.relation, "prediction": p, "references": list(ln.tails)}
            for ln, p in zip(lines, preds)]  # fmt: skip
    scored = score_by_relation(rows, lowercase=config.lowercase)
    report = {
        **scored["overall"],
        "per_relation": scored["per_relation"],
        "counts": scored["counts"],
        "model": who,
        "kind": "student" if model is not None else "teacher",
        "data": {"file": str(data), "split": config.split, **describe_lines(lines)},
        "decoding": {**decoding, "lowercase": config.lowercase},
    }
    if model is not None:
        from symkd.students.card import record_if_student

        record_if_student(model, f"atomic2020-{config.split}", {m: scored["overall"][m] for m in scored["overall"]
                                                                 if isinstance(scored["overall"][m], (int, float))},
                          dataset=str(data), split=config.split, details={"decoding": report["decoding"]})  # fmt: skip
    _write(report, rows, out, save_generations)
    if db is not None:
        record_evaluation(db, report, round)
    return EvaluationResult(**report)


def _teacher_predictions(teacher: str, lines: Sequence[AtomicLine], db: str | Path | None, progress: bool,
                         teacher_options: dict[str, Any] | None) -> list[str]:  # fmt: skip
    """:func:`teacher_predictions` through ``db``'s cache, or a throwaway one."""
    from symkd.store.db import Store

    tmp = None if db is not None else tempfile.TemporaryDirectory(prefix="symkd-eval-")
    store = Store(db if db is not None else Path(tmp.name) / "cache.db")  # type: ignore[union-attr]
    try:
        return teacher_predictions(teacher, lines, store, progress=progress, teacher_options=teacher_options)
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


def _write(report: dict[str, Any], rows: list[dict[str, Any]], out: str | Path | None, save_generations: str | Path | None) -> None:
    from symkd.jsonio import atomic_write, write_jsonl

    if save_generations is not None:
        write_jsonl(save_generations, ({"head": r["head"], "relation": r["relation"], "prediction": r["prediction"]} for r in rows))
    if out is not None:
        with atomic_write(out) as fh:
            json.dump(report, fh, indent=2)


@dataclass
class EvaluationResult(DictAccess):
    """COMET-ATOMIC2020 scores of one model on one ATOMIC file (the JSON of ``--out``)."""

    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    rougeL: float
    cider: float
    per_relation: dict[str, dict[str, float]]
    counts: dict[str, Any]
    model: str
    kind: str
    data: dict[str, Any]
    decoding: dict[str, Any]


def record_evaluation(db: str | Path | Any, report: dict[str, Any], round: int | None = None) -> str:
    from symkd.store.db import utcnow
    from symkd.students.records import upsert_row

    key = json.dumps([report["model"], report["data"]["file"], report["data"]["split"], report["decoding"], round], sort_keys=True)
    eval_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    row = {"id": eval_id, "kind": "commonsense", "model": report["model"], "data": json.dumps(report["data"]),
           "decoding": json.dumps(report["decoding"]), "round": round, **{m: report[m] for m in METRICS},
           "scores": json.dumps(report), "created_at": utcnow()}  # fmt: skip
    upsert_row(db, "evaluations", row)
    return eval_id
