"""The RollbackDrill resource: one rehearsal of a ModelDeployment's rollback path.

A drill is a one-shot object, like a Job: its spec is immutable once created,
and its status records what happened. That makes the list of drills an audit
log of how ready each model was to roll back, and when.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from modelcanary.api.base import DNS_LABEL_PATTERN, ApiModel, Duration, cel
from modelcanary.api.judging import CountJudgement, MetricResult
from modelcanary.api.modeldeployment import (
    API_VERSION,
    Condition,
    DrillMode,
)


class RollbackDrillSpec(ApiModel):
    """Which model to rehearse a rollback for, and how far to go."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "spec is immutable; create a new drill")
            ]
        }
    )

    model_deployment: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL_PATTERN)]
    """The ModelDeployment, in the drill's namespace."""

    mode: DrillMode = DrillMode.VERIFY
    """verify: last known-good can start at 0%; warm: also takes a small slice of traffic;
    live: all traffic flips to it and back."""

    warm_weight: Annotated[int, Field(ge=1, le=50)] | None = None
    """Percent of traffic for a warm drill; the ModelDeployment's drill.warmWeight when unset."""

    timeout: Duration = "10m"
    """The drill fails if it has not finished by then; traffic is put back first."""


class DrillPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REFUSED = "Refused"


class DrillRevisions(ApiModel):
    """The revisions a drill involved."""

    last_known_good: str | None = None
    """The revision rehearsed as the rollback target."""

    stable: str | None = None
    """The revision serving when the drill began."""


class RollbackDrillStatus(ApiModel):
    """What the drill did and measured."""

    phase: DrillPhase = DrillPhase.PENDING
    """Pending, Running, Succeeded, Failed or Refused."""

    step: str = ""
    """The drill's current step, so an interrupted drill can resume or undo itself."""

    started_at: datetime | None = None
    """When the drill began."""

    finished_at: datetime | None = None
    """When the drill ended."""

    time_to_ready_seconds: float | None = None
    """Seconds until the last known-good revision was Ready."""

    time_to_restore_seconds: float | None = None
    """Live drills: seconds from the switch until the router read back 100% on the rehearsed
    revision, that is, how long a real rollback takes to move the traffic."""

    time_to_healthy_seconds: float | None = None
    """Warm and live drills: seconds from the first traffic shift until analysis passed."""

    time_to_switch_back_seconds: float | None = None
    """Warm and live drills: seconds until the router read back the weights found at the start."""

    reason: str = ""
    """Why the drill failed or was refused."""

    revisions: DrillRevisions | None = None
    """The revisions involved."""

    weights_before: Annotated[dict[str, int], Field(max_length=16)] | None = None
    """The router's weights per revision when the drill began; restored at the end."""

    target_was_running: bool = False
    """Whether the rehearsed revision was already running; if not, it is scaled back to zero."""

    shift_started_at: datetime | None = None
    """When traffic began to move to the rehearsed revision (warm and live)."""

    judging_since: datetime | None = None
    """When the analysis of the rehearsed revision began."""

    judged_at: datetime | None = None
    """When the analysis last ran, so it runs once per analysis interval."""

    restore_started_at: datetime | None = None
    """When the weights began to go back to where they were."""

    results: Annotated[list[MetricResult], Field(max_length=32)] = Field(default_factory=list)
    """The latest analysis of the rehearsed revision, metric by metric: the drill's evidence."""

    verdict_note: str = ""
    """What the analysis said about the rehearsed revision."""

    judgements: list[CountJudgement] = Field(default_factory=list)
    """A warm drill's sequential-judge evidence, per count metric."""

    conditions: list[Condition] = Field(default_factory=list)
    """Standard conditions."""


class RollbackDrill(ApiModel):
    """One rehearsal of a ModelDeployment's rollback to its last known-good revision."""

    api_version: Literal["modelcanary.io/v1alpha1"] = API_VERSION
    kind: Literal["RollbackDrill"] = "RollbackDrill"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RollbackDrillSpec
    status: RollbackDrillStatus | None = None
