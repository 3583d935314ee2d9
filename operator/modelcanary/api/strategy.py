"""How a new revision is rolled out and how the way back is rehearsed.

Steps, pauses and the bake; the progress deadline and the scale-down delay;
automatic rollback; the drill schedule. CEL rules here keep a manifest the
operator could not carry out (falling weights, no 100% step) out at admission.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelcanary.api.base import (
    ApiModel,
    Duration,
    cel,
    parse_duration,
    validations,
)

MAX_STEPS = 32
MIN_PROGRESS_DEADLINE = "1s"


class Pause(ApiModel):
    """Wait before the next step."""

    duration: Duration | None = None
    """How long to wait; without it, wait until a person resumes or promotes."""


class Step(ApiModel):
    """One canary step: set a weight, or pause."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.setWeight) != has(self.pause)",
                "a step sets exactly one of setWeight or pause",
            )
        )
    )

    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    """Percent of traffic to send to the candidate."""

    pause: Pause | None = None
    """Wait, for a duration or until resumed."""

    @model_validator(mode="after")
    def _exactly_one_action(self) -> Step:
        if (self.set_weight is None) == (self.pause is None):
            raise ValueError("a step sets exactly one of setWeight or pause")
        return self


_WEIGHTS = "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight)"


class Bake(ApiModel):
    """After 100%: keep analysing while the previous revision stays warm."""

    duration: Duration = "0s"
    """How long the candidate must stay healthy at 100% before it is promoted."""


class Strategy(ApiModel):
    """The canary steps."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.steps.exists(s, has(s.setWeight))",
                "at least one step must set a weight",
                ".steps",
            ),
            cel(
                f"!self.steps.exists(s, has(s.setWeight)) || {_WEIGHTS}.isSorted()",
                "setWeight values must not decrease from one step to the next",
                ".steps",
            ),
            cel(
                f"!self.steps.exists(s, has(s.setWeight)) || {_WEIGHTS}.max() == 100",
                "the last setWeight must be 100",
                ".steps",
            ),
            cel(
                f"duration(self.progressDeadline) >= duration('{MIN_PROGRESS_DEADLINE}')",
                f"progressDeadline must be at least {MIN_PROGRESS_DEADLINE}",
                ".progressDeadline",
            ),
        )
    )

    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    """Steps in order; weights never decrease and the last weight is 100."""

    bake: Bake = Field(default_factory=Bake)
    """The soak at 100% before promotion."""

    progress_deadline: Duration = "10m"
    """How long the candidate may go without being Available (every desired replica
    ready) before its canary is aborted back to stable: from the canary's start, or
    from the moment it stopped being Available mid-canary. At least 1s."""

    scale_down_delay: Duration = "30s"
    """How long the previous stable revision stays at full size after a promotion, so
    a rollback within that window meets warm pods; 0s scales it down at once. Not
    used by the replicas router, where every ready pod takes traffic."""

    def weights(self) -> list[int]:
        return [step.set_weight for step in self.steps if step.set_weight is not None]

    @model_validator(mode="after")
    def _weights_rise_to_100(self) -> Strategy:
        weights = self.weights()
        if not weights:
            raise ValueError("at least one step must set a weight")
        if weights != sorted(weights):
            raise ValueError("setWeight values must not decrease from one step to the next")
        if weights[-1] != 100:
            raise ValueError("the last setWeight must be 100")
        return self

    @field_validator("progress_deadline")
    @classmethod
    def _deadline_long_enough(cls, value: str) -> str:
        if parse_duration(value) < parse_duration(MIN_PROGRESS_DEADLINE):
            raise ValueError(f"progressDeadline must be at least {MIN_PROGRESS_DEADLINE}")
        return value


# --------------------------------------------------------------------------- rollback and drills


class RollbackPolicy(ApiModel):
    """What happens to a failing candidate."""

    automatic: bool = True
    """Send all traffic back to the last known-good revision when analysis fails."""


class DrillMode(enum.StrEnum):
    """How far a rollback drill goes."""

    VERIFY = "verify"
    WARM = "warm"
    LIVE = "live"


CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


class DrillSchedule(ApiModel):
    """Rehearse the rollback on a schedule."""

    schedule: Annotated[str, Field(min_length=1, max_length=128, pattern=CRON_PATTERN)]
    """A cron schedule (five fields, or @daily and friends), in the CronJob's time zone."""

    mode: DrillMode = DrillMode.VERIFY
    """verify: last known-good can start at 0%; warm: also takes a small slice of traffic;
    live: all traffic flips to it and back."""

    warm_weight: Annotated[int, Field(ge=1, le=50)] = 5
    """Percent of traffic a warm drill sends to the last known-good revision."""

    history_limit: Annotated[int, Field(ge=1, le=100)] = 5
    """RollbackDrill objects kept per ModelDeployment; older ones are pruned."""

    suspend: bool = False
    """Stop scheduling drills without losing the schedule."""
