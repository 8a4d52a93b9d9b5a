"""REDI, Reinforcement Distillation (Xu et al. 2025, "Harnessing Negative Signals: Reinforcement
Distillation from Teacher Data for LLM Reasoning", arXiv 2505.24850): learn from the teacher's
failed trajectories too, without a reference model.

Per (prompt x, positive y+, negative y-) the paper minimises

    L = -log p(y+|x) / |y+|  +  alpha * log p(y-|x) / |y-|

(length-normalised sequence log-likelihoods; the reference code's ``loss_type: reinforce`` with
``reinforce_chosen_coef 1.0`` and ``reinforce_rejected_coef 0.8``: alpha = 0.8 by default). The
asymmetry (alpha < 1) keeps the push-down on negatives from running away, which is what made the
objective stable without a KL term. The paper trains SFT on positives first (stage 1), then REDI
on positives and negatives (stage 2): train a student with ``loss="sft"``, then use it as
``base_model`` with ``loss="redi"``.

Here examples are not paired: a step's sequences each carry their own term (+1 for a positive,
-alpha for a negative, times the sequence's mean token NLL) and the step's objective is their sum
divided by the number of sequences in the step. With one positive and one negative per prompt
that is the paper's per-pair loss over 2 (AdamW is invariant to that constant). |y| counts the
tokens the loss covers: for an agent trajectory, the model's own turns only.

This is not a white-box KD loss (no teacher logits), so it is not in the KD registry; the trainer
selects it with ``TrainConfig(loss="redi", redi_alpha=...)``.
"""

from __future__ import annotations

from typing import Any

#: the paper's asymmetric weight on negatives (``reinforce_rejected_coef``)
DEFAULT_ALPHA = 0.8


def sequence_nll(token_nll: Any, sequence: Any, n_sequences: int) -> tuple[Any, Any]:
    """(summed NLL, target-token count) per sequence, from per-token NLLs and their sequence index."""
    import torch

    sums = torch.zeros(n_sequences, dtype=token_nll.dtype, device=token_nll.device).index_add(0, sequence, token_nll)
    counts = torch.bincount(sequence, minlength=n_sequences).to(token_nll.dtype)
    return sums, counts


def redi_terms(token_nll: Any, sequence: Any, negative: Any, alpha: float = DEFAULT_ALPHA) -> tuple[Any, Any]:
    """(objective summed over the sequences, [positives' mean-NLL sum, negatives' mean-NLL sum]).

    ``token_nll[k]`` is -log p of target token k, ``sequence[k]`` the index of its sequence and
    ``negative[i]`` whether sequence i is a negative. Sequences without target tokens add nothing.
    Divide the objective by the number of sequences (of the whole optimizer step) to get the loss.
    """
    import torch

    sums, counts = sequence_nll(token_nll, sequence, negative.numel())
    mean_nll = torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))
    weight = torch.where(negative, torch.full_like(mean_nll, -alpha), torch.ones_like(mean_nll))
    objective = (weight * mean_nll).sum()
    logged = torch.stack([mean_nll[~negative].sum(), mean_nll[negative].sum()]).detach()
    return objective, logged
