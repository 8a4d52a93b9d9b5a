"""Option models of the agents pipeline that its CLI declares (kept light: imported at CLI start-up)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SelfTrainConfig(BaseModel):
    """The options of ``symkd agent self-train`` (CLI flags are generated from it)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, description="self-training rounds")
    samples: int = Field(4, ge=1, description="trajectories sampled per training problem and round")
    temperature: float = Field(0.7, gt=0, le=2, description="sampling temperature")
    seed_sources: list[str] = Field(["gold-rationales"], description="trajectory sources every student trains on")
    max_steps: int = Field(5, ge=1, description="steps per episode", json_schema_extra={"cli": "--max-agent-steps"})
    max_tokens: int = Field(192, ge=1, description="tokens per step")
    sandbox: str = Field("bwrap", description="bwrap | rlimit")
    eval_limit: int | None = Field(None, ge=1, description="first N evaluation problems only")
    wave: int = Field(64, ge=1, description="episodes in flight at once (each holds a sandbox worker)")
