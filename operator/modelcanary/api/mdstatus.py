"""The status of a ModelDeployment: what serves, how the rollout stands, what happened.

The operator alone writes it, once per pass. History entries keep each
revision's full predictor so any of them can be restored; the size of all this
is bounded by the spec (see ``api/size.py``).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from modelcanary.api import size
from modelcanary.api.base import (
    ApiModel,
    ShownText,
    shown,
)
from modelcanary.api.judging import AnalysisStatus, MetricResult
from modelcanary.api.predictor import ModelRef, Predictor
from modelcanary.api.strategy import DrillMode

MAX_HISTORY = 100
MAX_DRILL_HISTORY = 20
CONDITION_MESSAGE_BYTES = 4096
"""A condition's message as the operator writes it (the schema takes up to 32768, as
Kubernetes' own conditions do)."""


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    BAKING = "Baking"
    HEALTHY = "Healthy"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    INVALID = "Invalid"


class Condition(ApiModel):
    """A standard Kubernetes condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """Ready, Progressing, Degraded, AnalysisHealthy, InvalidSpec, InvalidStatus or
    RollbackReady."""

    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""

    reason: Annotated[str, Field(max_length=1024)] = ""
    """A CamelCase reason."""

    message: Annotated[str, Field(max_length=32768), shown(CONDITION_MESSAGE_BYTES)] = ""
    """A human-readable explanation."""

    last_transition_time: datetime | None = None
    """When the status last changed."""

    observed_generation: int | None = None
    """The spec generation the condition was computed for."""


class KnownGood(ApiModel):
    """A revision that passed analysis, with the evidence that made it good."""

    revision: str
    """The revision hash."""

    model: ModelRef
    """The model it serves."""

    promoted_at: datetime
    """When it became stable."""

    evidence: list[MetricResult] = Field(default_factory=list)
    """Metric values at promotion; empty for a first revision, which had nothing to compare with."""

    note: ShownText = ""
    """Why the evidence is what it is (e.g. first revision, promoted by hand)."""


class RevisionOutcome(enum.StrEnum):
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


class HistoryEntry(ApiModel):
    """A revision that was rolled out, with its full predictor so it can be restored."""

    revision: str
    """The revision hash."""

    predictor: Predictor
    """The predictor exactly as it was."""

    outcome: RevisionOutcome
    """How its rollout ended."""

    created_at: datetime
    """When its canary started."""

    finished_at: datetime | None = None
    """When its rollout ended."""

    reason: ShownText = ""
    """Why it ended that way, e.g. the metric, value and bound that failed."""

    evidence: list[MetricResult] = Field(default_factory=list)
    """Metric values when it was promoted or rolled back."""


class DrillSummary(ApiModel):
    """One finished rollback drill of this ModelDeployment."""

    name: str
    """The RollbackDrill object (it may since have been pruned)."""

    mode: DrillMode
    """verify, warm or live."""

    succeeded: bool
    """Whether the drill passed."""

    revision: str | None = None
    """The revision rehearsed as the rollback target."""

    started_at: datetime
    """When it started."""

    finished_at: datetime | None = None
    """When it ended."""

    time_to_ready_seconds: float | None = None
    """Seconds until the last known-good revision was Ready."""

    time_to_restore_seconds: float | None = None
    """Seconds until the router confirmed all traffic on the rehearsed revision (live drills)."""

    time_to_healthy_seconds: float | None = None
    """Seconds from the first traffic shift until its analysis passed (warm and live drills)."""

    reason: ShownText = ""
    """Why it failed."""


class ActionRecord(ApiModel):
    """The latest manual action (annotation modelcanary.io/action) and what came of it."""

    id: str
    """The request's id; a request is carried out once per id."""

    action: str
    """promote, promote-full, abort, pause, resume, retry or rollback."""

    revision: str | None = None
    """The target of a rollback."""

    accepted: bool
    """Whether the action was carried out."""

    message: ShownText = ""
    """What was done, or why the action does not apply now."""

    at: datetime
    """When the operator handled it."""


class ModelDeploymentStatus(ApiModel):
    """What is actually serving, and how the rollout stands."""

    phase: Phase = Phase.PENDING
    """Pending, Progressing, Paused, Baking, Healthy, RolledBack, Failed or Invalid."""

    message: ShownText = ""
    """A one-line summary for people."""

    observed_generation: int | None = None
    """The spec generation this status describes."""

    stable_revision: str | None = None
    """The revision serving the traffic not sent to the candidate."""

    canary_revision: str | None = None
    """The candidate, while a canary runs."""

    canary_weight: Annotated[int, Field(ge=0, le=100)] = 0
    """Percent of traffic the router confirmed for the candidate."""

    current_step: int | None = None
    """Index of the step being carried out."""

    step_started_at: datetime | None = None
    """When the current step started."""

    last_known_good: KnownGood | None = None
    """The revision to return to when a candidate fails."""

    history: Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY + size.IN_USE_ENTRIES)] = (
        Field(default_factory=list)
    )
    """Past revisions, newest first, bounded by revisionHistoryLimit; entries still in use
    (stable, candidate, last known-good, being restored) are kept beyond it."""

    analysis: AnalysisStatus | None = None
    """The latest analysis of the candidate."""

    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded, AnalysisHealthy, InvalidSpec, InvalidStatus and
    RollbackReady."""

    last_drill: DrillSummary | None = None
    """The latest finished rollback drill."""

    drill_history: Annotated[list[DrillSummary], Field(max_length=MAX_DRILL_HISTORY)] = Field(
        default_factory=list
    )
    """Finished drills, newest first; kept here after their RollbackDrill objects are pruned."""

    paused: bool = False
    """A person paused the rollout; steps wait, analysis (and rollback) go on."""

    restoring: str | None = None
    """A revision being restored to 100% by rollback --to."""

    promote_full: bool = False
    """promote --full was asked for: go to 100% and promote, skipping steps and the bake."""

    canary_unavailable_since: datetime | None = None
    """Since when the candidate has not been Available (unset while it is); the canary is
    aborted once this is older than strategy.progressDeadline."""

    previous_revision: str | None = None
    """The stable revision before the latest promotion, kept at full size (warm) until
    scaleDownAt so that a rollback meets ready pods."""

    scale_down_at: datetime | None = None
    """When previousRevision is scaled to zero (strategy.scaleDownDelay after the promotion)."""

    last_action: ActionRecord | None = None
    """The latest manual action."""
