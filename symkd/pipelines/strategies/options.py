"""``LearnConfig``: the options of a learn run, declared once (kept light: imported at CLI start-up).

The API takes it (or its fields as keyword overrides, :func:`learn_config`) and ``symkd
strategies learn`` gets its flags from it (``model_options``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from symkd.options import configured


class LearnConfig(BaseModel):
    """What a learn run does; all but ``rounds`` decide its outcome (:meth:`identity`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(2, ge=1, description="rounds of attempt -> propose -> accept")
    scenarios: int = Field(40, ge=1, description="scenarios drawn from --data")
    per_round: int = Field(8, ge=0, description="failed scenarios the teacher writes a strategy for, per round")
    synthetic: int = Field(0, ge=0, description="new scenarios the teacher writes per targeted failure")
    n_validation: int = Field(8, ge=0, description="similar scenarios a candidate must help on",
                              json_schema_extra={"cli": "--validation"})  # fmt: skip
    n_control: int = Field(8, ge=0, description="random scenarios a candidate must not hurt",
                           json_schema_extra={"cli": "--control"})  # fmt: skip
    k: int = Field(3, ge=0, description="strategies retrieved into the student's prompt")
    min_similarity: float = Field(0.3, description="least cosine for a strategy to be retrieved")
    merge_threshold: float = Field(0.9, gt=0, le=1, description="cosine at which near-duplicates merge")
    min_gain: float = Field(0.0, description="validation accuracy must rise by more than this")
    max_p: float = Field(1.0, ge=0, le=1, description="largest sign-test p-value accepted (1 = not required)")
    seed: int = Field(0, description="seed of the scenario sample and control sets")
    student_max_tokens: int = Field(160, ge=1, description="tokens per student answer")

    def identity(self) -> dict[str, Any]:
        """What decides a round's outcome (``rounds`` is not in it: asking for more rounds continues)."""
        return self.model_dump(exclude={"rounds"})

    def acceptance(self) -> Any:
        from symkd.pipelines.strategies.acceptance import AcceptanceConfig

        return AcceptanceConfig(self.n_validation, self.n_control, self.min_gain, self.max_p, self.merge_threshold)


def learn_config(config: LearnConfig | None = None, overrides: dict[str, Any] | None = None) -> LearnConfig:
    """``config`` (default :class:`LearnConfig`) with ``overrides`` (its fields) applied and
    validated; a bad or unknown field is one line naming it."""
    return configured(LearnConfig, config, overrides, where="learn_strategies")
