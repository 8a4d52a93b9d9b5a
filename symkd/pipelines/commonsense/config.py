"""The settings of ``symkd commonsense distill`` and ``symkd commonsense eval``, declared once.

:class:`DistillConfig` and :class:`EvalConfig` are the Python API's ``config=`` (or its keyword
overrides) and, through :func:`symkd.commandline.model_options`, the commands' options: a field's
description is its ``--help``, its ``cli`` extra the flag where that differs from the field name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from symkd.options import configured

DEFAULT_CRITICS = ("rules", "dedupe", "classifier")
SAMPLES_PER_RELATION = 2
CONSTRAIN = ("all", "events", "inferences")
SPLITS = ("all", "eval", "critic")


class DistillConfig(BaseModel):
    """What :func:`~symkd.pipelines.commonsense.pipeline.distill_commonsense` generates, keeps and trains."""

    model_config = ConfigDict(extra="forbid")

    seeds: Union[Path, str, List[str], None] = Field(None, description="seed file: one event (PersonX ...) or entity a line")
    n_events: int = Field(50, ge=0, description="events to keep")
    n_entities: Optional[int] = Field(None, ge=0, description="entity heads taken from the events (default n-events/5)")
    relations: Union[str, List[str], None] = Field("all", description="all | social | event | physical | comma list",
                                                   json_schema_extra={"cli": "-r"})  # fmt: skip
    samples_per_relation: int = Field(SAMPLES_PER_RELATION, ge=1, le=128, description="samples per (head, relation)",
                                      json_schema_extra={"cli": "--samples"})  # fmt: skip
    seed: int = Field(0, description="makes the run reproducible")
    critics: Union[str, List[Any]] = Field(",".join(DEFAULT_CRITICS), validate_default=True,
                                           description="comma list of critic specs, or none")  # fmt: skip
    thresholds: Optional[dict[str, float]] = Field(None, description="threshold per critic name (Python API)")
    require_words: Optional[List[str]] = Field(None, validate_default=True, json_schema_extra={"cli": "--require"},
                                               description="word/phrase every output must contain (repeatable)")  # fmt: skip
    forbid_words: Optional[List[str]] = Field(None, validate_default=True, json_schema_extra={"cli": "--forbid"},
                                              description="word/phrase no output may contain (repeatable)")  # fmt: skip
    constrain: Literal["all", "events", "inferences"] = Field("all", description="what --require/--forbid apply to: all | events | inferences")
    rounds: int = Field(0, ge=0, description="students to train: 1 = on the teacher's kept triples; k > 1 adds k-1 self-imitation rounds")
    student_dir: Union[Path, str, None] = Field(None, description="folder for the students (round-1, round-2, ...)")
    train_options: Optional[dict[str, Any]] = Field(None, description="TrainConfig fields for the students (Python API)")
    eval_data: Union[Path, str, None] = Field(None, description="ATOMIC TSV to score every student on")
    eval_split: Literal["all", "eval", "critic"] = Field("eval", description="all | eval | critic part of --eval-data")

    @field_validator("critics", mode="before")
    @classmethod
    def _split_critics(cls, value: Any) -> Any:
        """``"rules,classifier:threshold=0.7,dedupe"`` -> one spec per critic; "none" -> []."""
        if isinstance(value, str):
            from symkd.critics.registry import split_critic_specs

            return [] if value.strip().lower() in ("", "none") else split_critic_specs(value)
        return list(value) if isinstance(value, tuple) else value

    @field_validator("require_words", "forbid_words", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return [] if value is None else value


#: fields that only the Python API sets (the command fills train_options from its --student-* options)
API_ONLY = ("thresholds", "train_options")


class EvalConfig(BaseModel):
    """How :func:`~symkd.pipelines.commonsense.evaluate.evaluate_commonsense` decodes and scores."""

    model_config = ConfigDict(extra="forbid")

    split: Literal["all", "eval", "critic"] = Field("all", description="all | eval | critic (halves of the dev split by head)")
    num_beams: int = Field(1, ge=1, description="1 = greedy; N = beam search", json_schema_extra={"cli": "--beams"})
    max_new_tokens: int = Field(24, ge=1, description="tokens generated per tail at most")
    batch_size: int = Field(32, ge=1, description="prompts per generation batch")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    lowercase: bool = Field(False, description="lowercase both sides (COMET's earlier script)")


def settings(model: type[BaseModel], config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` (a ``model``, a dict or None) with ``overrides`` (its field names) applied; a bad
    or unknown field is one line naming it: ``samples_per_relation: must be ... (got 0)``."""
    return configured(model, config, overrides)
