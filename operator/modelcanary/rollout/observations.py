"""What the edges saw in one reconcile pass: the decision core's only view of the world.

Handlers fill these from the API server (Deployments), the router (weights it
reads back) and the metric provider (samples); the core never looks anywhere
else. Everything here is immutable plain data, so a test can build any
situation in one expression and a restarted operator that observes the same
world gets the same decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from modelcanary.analysis.samples import AnalysisObservation, MetricObservation, Sample
from modelcanary.api.modeldeployment import (
    DrillSummary,
)

__all__ = [
    "ActiveDrill",
    "AnalysisObservation",
    "FinishedDrill",
    "ManualAction",
    "MetricObservation",
    "Observations",
    "RevisionObservation",
    "RouterObservation",
    "Sample",
]


@dataclass(frozen=True)
class RevisionObservation:
    """One revision's Deployment as the API server reports it."""

    revision: str
    exists: bool = True
    desired_replicas: int = 0
    ready_replicas: int = 0
    available: bool = False
    """Deployment condition Available=True, rolled out (observedGeneration and
    updatedReplicas current) and ready_replicas == desired_replicas > 0."""

    problem: str | None = None
    """Why it cannot become Ready, when the Deployment says so (ReplicaFailure, or
    Progressing=False): e.g. pods refused by admission, or a deadline exceeded."""

    autoscaler_min_replicas: int | None = None
    """minReplicas of the revision's HorizontalPodAutoscaler; None when it has none."""


@dataclass(frozen=True)
class RouterObservation:
    """The weights the router reads back, revision -> percent (summing to 100)."""

    weights: Mapping[str, int] | None = None
    """None when the router object does not exist yet or could not be read."""

    error: str | None = None


@dataclass(frozen=True)
class ManualAction:
    """A request from a person (annotation ``modelcanary.io/action``)."""

    kind: str
    """promote, promote-full, abort, pause, resume, retry or rollback."""

    id: str
    """Handled once per id; the CLI sets a fresh one each time."""

    revision: str | None = None
    """The target of ``rollback``."""


@dataclass(frozen=True)
class ActiveDrill:
    """A RollbackDrill of this ModelDeployment that is running right now."""

    name: str
    target: str | None
    """The revision it rehearses; it may take traffic while the drill runs."""


@dataclass(frozen=True)
class FinishedDrill:
    """A RollbackDrill of this ModelDeployment that has ended."""

    name: str
    summary: DrillSummary | None
    """What it showed; None for a refused drill, which rehearsed nothing."""

    ended_at: datetime | None = None


@dataclass(frozen=True)
class Observations:
    revisions: Mapping[str, RevisionObservation] = field(default_factory=dict)
    router: RouterObservation = field(default_factory=RouterObservation)
    analysis: AnalysisObservation | None = None
    """None when no evaluation was due (or possible) this pass."""
    action: ManualAction | None = None
    drill: ActiveDrill | None = None
    """A running drill owns the traffic split until it has put it back."""
    finished_drills: tuple[FinishedDrill, ...] = ()
    """This ModelDeployment's RollbackDrills that have ended, to record and prune."""
