"""COMET-ATOMIC2020 automatic metrics: corpus BLEU-1..4, ROUGE-L and CIDEr (pycocoevalcap).

Reproduces ``system_eval/automatic_eval.py`` of allenai/comet-atomic-2020 (final revision):

* one prediction per (head, relation) line, scored against *all* references of that line;
* references are ``.strip()``-ed (the script splits the TSV field on ``|`` and strips each);
  predictions are used as generated (here also stripped, a no-op for COMET's outputs);
* no lowercasing and no PTBTokenizer (the script passes raw strings; no Java needed):
  BLEU and CIDEr split on whitespace (``str.split()``), ROUGE-L on single spaces
  (``str.split(" ")``), exactly as the scorers do. Punctuation stays attached ("phone." ≠ "phone");
* ``"none"`` is an ordinary string on both sides: a "none" line counts like any other;
* scorers: ``Bleu(4)`` (corpus-level, ``option="closest"`` brevity penalty), ``Rouge()``
  (mean over lines of the LCS F-measure with beta 1.2) and ``Cider()`` (n = 4, sigma = 6, idf
  from the references of the scored set), whose code the COMET repository ships verbatim.

``lowercase=True`` lowercases both sides, as the script's earlier revision (661ffd9) did.
Per-relation scores run the same scorers on that relation's lines alone (so CIDEr's idf comes
from that relation; a relation with a single line has CIDEr 0, since idf is log(1) = 0).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping
from typing import Any

from symkd.errors import UserError
from symkd.pipelines.commonsense.relations import RELATIONS
from symkd.students.evaluate import MetricSet

METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "cider")


def _scorers() -> tuple[Any, Any, Any]:
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        raise UserError("evaluation needs pycocoevalcap: pip install pycocoevalcap") from None
    return Bleu(4), Rouge(), Cider()


def prepare(text: str, lowercase: bool = False) -> str:
    """The text handed to the scorers: stripped, optionally lowercased, otherwise untouched."""
    text = text.strip()
    return text.lower() if lowercase else text


def score_corpus(
    predictions: list[str], references: list[list[str]], *, lowercase: bool = False
) -> dict[str, float]:
    """Corpus scores ``{bleu1..bleu4, rougeL, cider}`` of one prediction per reference list."""
    if len(predictions) != len(references):
        raise UserError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise UserError("nothing to score: no predictions")
    res: dict[str, list[str]] = {}
    gts: dict[str, list[str]] = {}
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise UserError(f"line {i + 1}: prediction must be a string, got {type(pred).__name__}")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise UserError(f"line {i + 1}: references must be a non-empty list of strings")
        res[str(i)] = [prepare(pred, lowercase)]
        gts[str(i)] = [prepare(r, lowercase) for r in refs]
    bleu, rouge, cider = _scorers()
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its length statistics
        bleu_scores, _ = bleu.compute_score(gts, res)
        rouge_score, _ = rouge.compute_score(gts, res)
        # Cider's document-frequency check fails when no reference has a single token
        has_ngrams = any(r.split() for refs in gts.values() for r in refs)
        cider_score = cider.compute_score(gts, res)[0] if has_ngrams else 0.0
    scores = [float(b) for b in bleu_scores] + [float(rouge_score), float(cider_score)]
    return dict(zip(METRICS, scores))


def _field(row: Any, name: str, index: int) -> Any:
    value = row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)
    if value is None:
        raise UserError(f"row {index + 1}: missing field {name!r}")
    return value


def score_by_relation(rows: Iterable[Any], *, lowercase: bool = False) -> dict[str, Any]:
    """Overall and per-relation scores of rows with ``head, relation, prediction, references``.

    Rows are mappings or objects with those attributes. Returns a JSON-ready dict::

        {"overall": {metric: value}, "per_relation": {relation: {metric: value}},
         "counts": {"total": n, "per_relation": {relation: n}}}

    Relations are listed in ATOMIC2020 order, then any others in order of appearance.
    """
    by_relation: dict[str, tuple[list[str], list[list[str]]]] = {}
    predictions: list[str] = []
    references: list[list[str]] = []
    for i, row in enumerate(rows):
        _field(row, "head", i)
        relation = str(_field(row, "relation", i))
        pred, refs = _field(row, "prediction", i), list(_field(row, "references", i))
        predictions.append(pred)
        references.append(refs)
        preds_r, refs_r = by_relation.setdefault(relation, ([], []))
        preds_r.append(pred)
        refs_r.append(refs)
    if not predictions:
        raise UserError("nothing to score: no rows")
    known = [r for r in RELATIONS if r in by_relation]
    order = known + [r for r in by_relation if r not in RELATIONS]
    return {
        "overall": score_corpus(predictions, references, lowercase=lowercase),
        "per_relation": {r: score_corpus(*by_relation[r], lowercase=lowercase) for r in order},
        "counts": {"total": len(predictions), "per_relation": {r: len(by_relation[r][0]) for r in order}},
    }


def group_references(
    triples: Iterable[tuple[str, str, str]], *, dedupe: bool = True
) -> dict[tuple[str, str], list[str]]:
    """``(head, relation, tail)`` triples -> ``{(head, relation): [tails]}`` in first-seen order.

    COMET-ATOMIC2020's ``test.tsv`` lists each distinct tail of a (head, relation) once, hence
    ``dedupe=True`` (after stripping); duplicates change CIDEr, which averages over references.
    """
    grouped: dict[tuple[str, str], list[str]] = {}
    for head, relation, tail in triples:
        tails = grouped.setdefault((head.strip(), relation.strip()), [])
        tail = tail.strip()
        if not (dedupe and tail in tails):
            tails.append(tail)
    return grouped


#: entry point ``symkd.metrics: atomic2020``
ATOMIC_METRICS = MetricSet("atomic2020", METRICS, score_by_relation,
                           "COMET-ATOMIC2020 automatic metrics: corpus BLEU-1..4, ROUGE-L, CIDEr")
