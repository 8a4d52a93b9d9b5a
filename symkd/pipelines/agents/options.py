"""Option models of the agents pipeline that its CLI declares (kept light: imported at CLI start-up)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from symkd.options import configured

_STEPS = {"cli": "--max-agent-steps"}


class AgentConfig(BaseModel):
    """Everything an episode's outcome depends on besides the model and the task.

    Declared once: the API takes it (or its fields as keyword overrides) and the commands that
    run agents get their flags from it (``model_options``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_steps: int = Field(5, ge=1, description="steps per episode", json_schema_extra=_STEPS)
    few_shot: bool = Field(True, description="worked examples in the prompt")
    max_tokens: int = Field(192, ge=1, description="tokens per step")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature of the actions (0: greedy)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the actions")
    seed: int = Field(0, description="sampling seed")
    sag: int = Field(0, ge=0, description="self-consistent action generation: N candidates per step (8 usual; 0 off)")
    sag_temperature: float = Field(0.4, gt=0, le=2, description="sampling temperature of --sag candidates")
    sag_top_p: float = Field(0.8, gt=0, le=1, description="nucleus sampling of --sag candidates")
    sandbox: Literal["bwrap", "rlimit"] = Field("bwrap", description="bwrap | rlimit (weaker; no namespaces)")
    step_timeout: float = Field(10.0, gt=0, description="seconds a step's code may run")
    wave: int = Field(64, ge=1, description="episodes in flight at once (each holds a sandbox worker)")
    template: str = Field("agents/codeact", description="prompt template of the agent")
    workers: int = Field(0, ge=0, description="threads running the episodes' steps (0: one per core, at most 16)")

    @field_validator("sag")
    @classmethod
    def _sag(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (off) or at least 2 candidates (8 is the usual choice)")
        return value

    def params(self) -> Any:
        """The generation parameters of one step (N candidates with ``sag``)."""
        from symkd.teachers.messages import GenerationParams

        stop = ("Observation:",)
        if self.sag:
            return GenerationParams(n=self.sag, temperature=self.sag_temperature, top_p=self.sag_top_p,
                                    max_tokens=self.max_tokens, stop=stop, seed=self.seed)  # fmt: skip
        seed = self.seed if self.temperature > 0 else None
        return GenerationParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                                stop=stop, seed=seed)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """What is recorded with trajectories and evaluations (what cannot change an outcome left out)."""
        return self.model_dump(exclude={"wave", "workers"})

    def threads(self) -> int:
        import os

        return self.workers or min(16, os.cpu_count() or 1)


def agent_config(config: AgentConfig | None = None, overrides: dict[str, Any] | None = None, *,
                 where: str = "agent") -> AgentConfig:  # fmt: skip
    """``config`` (default :class:`AgentConfig`) with ``overrides`` (its fields) applied and
    validated; a bad or unknown field is one line naming it (``evaluate: sag: must be ...``)."""
    return configured(AgentConfig, config, overrides, where=where)


def _shared(name: str, **changes: Any) -> Any:
    """The field ``name`` of :class:`AgentConfig` (its default, bounds and help), for another model."""
    field = AgentConfig.model_fields[name]
    return Field(changes.get("default", field.default), description=changes.get("description", field.description),
                 json_schema_extra=field.json_schema_extra, **_bounds(field))  # fmt: skip


def _bounds(field: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(item, key, None) is not None:
                out[key] = getattr(item, key)
    return out


class SelfTrainConfig(BaseModel):
    """The options of ``symkd agent self-train`` (CLI flags are generated from it)."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(2, ge=1, description="self-training rounds")
    samples: int = Field(4, ge=1, description="trajectories sampled per training problem and round")
    temperature: float = Field(0.7, gt=0, le=2, description="sampling temperature")
    seed_sources: list[str] = Field(["gold-rationales"], description="trajectory sources every student trains on")
    max_steps: int = _shared("max_steps")
    max_tokens: int = _shared("max_tokens")
    sandbox: Literal["bwrap", "rlimit"] = _shared("sandbox")
    eval_limit: int | None = Field(None, ge=1, description="first N evaluation problems only")
    wave: int = _shared("wave")
