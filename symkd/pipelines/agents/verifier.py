"""The verifier critic: keeps a trajectory whose final answer is right and whose steps all parsed.

A trajectory is kept when its final answer matches the reference (``answers_match``), no step
failed to parse and the step limit was not hit; one that recovered from a code error (a
step raised, a later one fixed it) is kept. Rejected trajectories stay in the table, marked
``drop`` in ``critic_scores``, for negative-aware training.

    symkd critic apply --db run.db --critics verifier
"""

from __future__ import annotations

from typing import Any, Sequence

from symkd.critics.base import Critic, Verdict
from symkd.pipelines.agents.gsm8k import answers_match


class VerifierCritic(Critic):
    name = "verifier"
    version = "1"
    item_table = "trajectories"

    def __init__(self, **options: Any):
        if options:
            raise TypeError(f"the verifier critic takes no options, got {sorted(options)}")

    def score(self, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        return [self.judge(item) for item in items]

    @staticmethod
    def judge(item: dict[str, Any]) -> Verdict:
        correct = item.get("final_answer") is not None and answers_match(item["final_answer"], item["reference"])
        reasons = [r for r, bad in (("wrong-answer", not correct), ("parse-error", bool(item.get("parse_errors"))),
                                    ("step-limit", bool(item.get("hit_step_limit")))) if bad]  # fmt: skip
        details = {"reasons": reasons, "recovered": bool(item.get("exec_errors")) and not reasons}
        return Verdict(score=1.0 if not reasons else 0.0, keep=not reasons, details=details)
