"""Training the classifier critic: examples, negatives by corruption, head training, thresholds.

Positives are human triples (every reference tail of an ATOMIC line). Negatives, made
within the same partition so no tail crosses from training into validation:

- ``other-head``: a tail the same relation has for another head;
- ``other-relation``: a tail the same head has for another relation;
- ``reject``: tails a human rejected (a user-supplied ATOMIC TSV).

A corrupted tail never matches (after normalisation) a true tail of that head and relation.
Training and validation are split by head; the threshold comes from the validation
precision/recall curve (the paper keeps recall 0.5 for "high" and 0.8 for "medium").
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from symkd.pipelines.commonsense.atomic import AtomicLine
from symkd.graphs.triples import normalize
from symkd.errors import UserError

VAL_SALT = "symkd-critic-val-v1"
VAL_PERCENT = 20
NAMED_RECALL = {"high": 0.5, "medium": 0.8}
NEGATIVE_KINDS = ("other-head", "other-relation")


@dataclass(frozen=True)
class Example:
    head: str
    relation: str
    tail: str
    label: int  # 1 = valid (human), 0 = corrupted or rejected
    kind: str  # human | other-head | other-relation | reject


@dataclass
class TrainConfig:
    #: full-batch L-BFGS iterations (each is one pass over the training features)
    epochs: int = 100
    seed: int = 13
    #: inverse L2 strength, as scikit-learn's LogisticRegression(C=...)
    c: float = 1.0
    negatives_per_positive: int = 2
    target_recall: float | None = 0.8
    target_precision: float | None = None
    device: str = "auto"


def is_validation_head(head: str) -> bool:
    """Training/validation split by head: a stable hash, 20 % of heads for validation."""
    digest = hashlib.sha1(f"{VAL_SALT}:{normalize(head)}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100 < VAL_PERCENT


def positives(lines: Sequence[AtomicLine]) -> list[Example]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for ln in lines:
        for tail in ln.tails:
            key = (normalize(ln.head), ln.relation, normalize(tail))
            if key not in seen:
                seen.add(key)
                out.append(Example(ln.head, ln.relation, tail, 1, "human"))
    return out


def true_tails(lines: Sequence[AtomicLine]) -> dict[tuple[str, str], set[str]]:
    """(normalised head, relation) -> normalised reference tails."""
    truth: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ln in lines:
        truth[(normalize(ln.head), ln.relation)].update(normalize(t) for t in ln.tails)
    return truth


def corrupt(lines: Sequence[AtomicLine], per_positive: int, rng: random.Random) -> list[Example]:
    """Negatives by corruption, alternating other-head / other-relation (whichever is possible)."""
    truth = true_tails(lines)
    by_relation: dict[str, list[tuple[str, str]]] = defaultdict(list)  # relation -> (norm head, tail)
    by_head: dict[str, list[tuple[str, str]]] = defaultdict(list)  # norm head -> (relation, tail)
    for ln in lines:
        for tail in ln.tails:
            by_relation[ln.relation].append((normalize(ln.head), tail))
            by_head[normalize(ln.head)].append((ln.relation, tail))
    any_tail = [(h, t) for pool in by_relation.values() for h, t in pool]
    out: list[Example] = []
    seen: set[tuple[str, str, str]] = set()
    for i, pos in enumerate(positives(lines)):
        head, bad = normalize(pos.head), truth[(normalize(pos.head), pos.relation)]
        for k in range(per_positive):
            kinds = NEGATIVE_KINDS if (i + k) % 2 == 0 else NEGATIVE_KINDS[::-1]
            for kind in kinds:
                if kind == "other-head":
                    pool = [t for h, t in by_relation[pos.relation] if h != head] or [t for h, t in any_tail if h != head]
                else:
                    pool = [t for r, t in by_head[head] if r != pos.relation]
                tail = _draw(pool, bad, rng)
                key = (head, pos.relation, normalize(tail or ""))
                if tail is not None and key not in seen:
                    seen.add(key)
                    out.append(Example(pos.head, pos.relation, tail, 0, kind))
                    break
    return out


def _draw(pool: list[str], bad: set[str], rng: random.Random, tries: int = 8) -> str | None:
    for _ in range(tries if pool else 0):
        tail = rng.choice(pool)
        if normalize(tail) not in bad:
            return tail
    ok = [t for t in pool if normalize(t) not in bad]
    return rng.choice(ok) if ok else None


def rejected(rejects: Sequence[AtomicLine], lines: Sequence[AtomicLine]) -> tuple[list[Example], int]:
    """Human rejects as negatives; a reject that is also a reference is dropped (counted)."""
    truth = true_tails(lines)
    out, conflicts, seen = [], 0, set()
    for ln in rejects:
        for tail in ln.tails:
            key = (normalize(ln.head), ln.relation, normalize(tail))
            if key[2] in truth.get(key[:2], set()):
                conflicts += 1
            elif key not in seen:
                seen.add(key)
                out.append(Example(ln.head, ln.relation, tail, 0, "reject"))
    return out, conflicts


def make_examples(
    lines: Sequence[AtomicLine], rejects: Sequence[AtomicLine] = (), *, per_positive: int = 2, seed: int = 13
) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """(train, validation, counts): split by head first, then positives + negatives per part."""
    parts: dict[str, list[Example]] = {}
    counts: dict[str, Any] = {"reject_conflicts": 0}
    for part in ("train", "validation"):
        want = part == "validation"
        part_lines = [ln for ln in lines if is_validation_head(ln.head) == want]
        part_rejects = [ln for ln in rejects if is_validation_head(ln.head) == want]
        rng = random.Random(f"{seed}:{part}")
        pos = positives(part_lines)
        rej, conflicts = rejected(part_rejects, part_lines)
        parts[part] = pos + corrupt(part_lines, per_positive, rng) + rej
        counts["reject_conflicts"] += conflicts
        kinds: dict[str, int] = defaultdict(int)
        for ex in parts[part]:
            kinds[ex.kind] += 1
        counts[part] = {"heads": len({normalize(ln.head) for ln in part_lines}), "lines": len(part_lines), **kinds}
    if not parts["train"] or not parts["validation"]:
        raise UserError(f"too little data to split by head: {counts['train']['heads']} train / "
                        f"{counts['validation']['heads']} validation heads")
    for part in ("train", "validation"):
        labels = {ex.label for ex in parts[part]}
        if labels != {0, 1}:
            raise UserError(f"the {part} part has only {'positives' if 1 in labels else 'negatives'}; add more heads")
    return parts["train"], parts["validation"], counts


def train_head(x_train, r_train, y_train, cfg: TrainConfig, log: Callable[[str], None] = lambda s: None):
    """L2 logistic regression with balanced class weights, full-batch L-BFGS from zeros (no sampling)."""
    import torch

    from symkd.pipelines.commonsense.critics.classifier import FEATURES, RELATION_ORDER, build_head

    if cfg.epochs < 1 or cfg.c <= 0:
        raise UserError(f"epochs must be >= 1 and C > 0 (got {cfg.epochs}, {cfg.c})")
    dim = int(x_train.shape[1]) // 4
    head_cfg = {"type": "logistic-regression", "dim": dim, "input": 4 * dim + len(RELATION_ORDER) * dim,
                "features": FEATURES, "relations": RELATION_ORDER, "C": cfg.c}
    head = build_head(head_cfg)
    torch.nn.init.zeros_(head.base.weight)
    torch.nn.init.zeros_(head.base.bias)
    y = torch.as_tensor(y_train, dtype=torch.float32)
    n_pos, n_neg = (y == 1).sum().item(), (y == 0).sum().item()
    weight = torch.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * n_neg))  # balanced classes
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=cfg.epochs, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(head(x_train, r_train), y, weight=weight, reduction="sum")
        loss = cfg.c * bce + 0.5 * ((head.base.weight**2).sum() + (head.rel**2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    log(f"trained a logistic head on {len(y)} examples x {head_cfg['input']} features")
    return head.eval(), head_cfg


def threshold_for(curve: dict[str, list], *, recall: float | None = None, precision: float | None = None) -> dict[str, float]:
    """The highest threshold keeping >= ``recall``, or the lowest reaching >= ``precision``."""
    points = list(zip(curve["thresholds"], curve["precision"], curve["recall"]))
    if recall is not None:
        ok = [p for p in points if p[2] >= recall]
        best = max(ok, key=lambda p: p[0])
    elif precision is not None:
        ok = [p for p in points if p[1] >= precision]
        if not ok:
            top = max(p[1] for p in points)
            raise UserError(f"no threshold reaches precision {precision} on validation (best {top:.3f})")
        best = min(ok, key=lambda p: p[0])
    else:
        raise ValueError("give recall or precision")
    return {"threshold": round(float(best[0]), 6), "precision": round(float(best[1]), 4), "recall": round(float(best[2]), 4)}


def evaluate(scores: Sequence[float], labels: Sequence[int], cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, list]]:
    """AUC, AP, the PR curve and thresholds (high, medium, chosen) on validation scores."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    prec, rec, thr = precision_recall_curve(labels, scores)
    curve = {"thresholds": thr.tolist(), "precision": prec[:-1].tolist(), "recall": rec[:-1].tolist()}
    thresholds = {name: threshold_for(curve, recall=r) for name, r in NAMED_RECALL.items()}
    if cfg.target_precision is not None:
        thresholds["chosen"] = threshold_for(curve, precision=cfg.target_precision)
        target = {"precision": cfg.target_precision}
    else:
        thresholds["chosen"] = threshold_for(curve, recall=cfg.target_recall or 0.8)
        target = {"recall": cfg.target_recall or 0.8}
    metrics = {
        "auc": round(float(roc_auc_score(labels, scores)), 4),
        "ap": round(float(average_precision_score(labels, scores)), 4),
        "positive_rate": round(sum(labels) / len(labels), 4),
        "target": target,
        "thresholds": thresholds,
    }
    return metrics, curve


def auc_by_kind(scores: Sequence[float], examples: Sequence[Example]) -> dict[str, float]:
    """AUC of human positives against each kind of negative (which corruption is hard)."""
    from sklearn.metrics import roc_auc_score

    pos = [s for s, ex in zip(scores, examples) if ex.label == 1]
    out = {}
    for kind in sorted({ex.kind for ex in examples if ex.label == 0}):
        neg = [s for s, ex in zip(scores, examples) if ex.kind == kind]
        out[kind] = round(float(roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg)), 4)
    return out


def fit(
    lines: Sequence[AtomicLine],
    rejects: Sequence[AtomicLine] = (),
    cfg: TrainConfig | None = None,
    log: Callable[[str], None] = lambda s: None,
    progress: bool = False,
) -> dict[str, Any]:
    """Build examples, embed them, train the head, evaluate: everything an artifact needs."""
    import torch

    from symkd.pipelines.commonsense.critics.classifier import get_encoder

    cfg = cfg or TrainConfig()
    started = time.monotonic()
    train, val, counts = make_examples(lines, rejects, per_positive=cfg.negatives_per_positive, seed=cfg.seed)
    log(f"examples: {len(train)} train, {len(val)} validation ({counts['train']['heads']}/{counts['validation']['heads']} heads)")
    encoder = get_encoder(cfg.device)
    x_train, r_train = _features(encoder, train, progress, "embed train")
    x_val, r_val = _features(encoder, val, progress, "embed validation")
    head, head_cfg = train_head(x_train, r_train, [ex.label for ex in train], cfg, log)
    with torch.inference_mode():
        # rounded once, so the card's numbers are exactly what validation.json reproduces
        val_scores = [round(v, 6) for v in torch.sigmoid(head(x_val, r_val)).tolist()]
        train_scores = torch.sigmoid(head(x_train, r_train)).tolist()
    labels = [ex.label for ex in val]
    metrics, curve = evaluate(val_scores, labels, cfg)
    from sklearn.metrics import roc_auc_score

    metrics["train_auc"] = round(float(roc_auc_score([ex.label for ex in train], train_scores)), 4)
    metrics["auc_by_negative_kind"] = auc_by_kind(val_scores, val)
    return {
        "head": head,
        "head_config": head_cfg,
        "counts": counts,
        "metrics": metrics,
        "curve": curve,
        "validation": {"scores": val_scores, "labels": labels, "kinds": [ex.kind for ex in val]},
        "seconds": round(time.monotonic() - started, 1),
        "config": cfg,
    }


def _features(encoder, examples: Sequence[Example], progress: bool, label: str):
    import torch

    triples = [(ex.head, ex.relation, ex.tail) for ex in examples]
    xs, rs = [], []
    bar = None
    if progress:
        from symkd.progress import bar as progress_bar

        bar = progress_bar(total=len(triples), desc=label, unit="triple")
    for start in range(0, len(triples), 512):
        x, r = encoder.features(triples[start : start + 512])
        xs.append(x)
        rs.append(r)
        if bar:
            bar.update(len(r))
    if bar:
        bar.close()
    return torch.cat(xs), torch.cat(rs)


def save_weights_bytes(head) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
