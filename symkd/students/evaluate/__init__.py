"""COMET-ATOMIC2020 automatic evaluation of a student's generations (BLEU-1..4, ROUGE-L, CIDEr)."""

from __future__ import annotations

from symkd.students.evaluate.metrics import METRICS, group_references, prepare, score_by_relation, score_corpus

__all__ = ["METRICS", "group_references", "prepare", "score_by_relation", "score_corpus"]
