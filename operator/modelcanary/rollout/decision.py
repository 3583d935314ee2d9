"""What the decision core hands back: a new status, actions for the edges, events.

Actions are plain data. The handler carries them out in order, and only then
writes the status, once. If the operator dies in between, the next pass
observes the world again and reaches the same decision, so every action must
be safe to repeat: ensure this Deployment, scale that one, set these weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from modelcanary.api.modeldeployment import (
    ModelDeploymentStatus,
    Predictor,
)

Role = Literal["stable", "canary"]


@dataclass(frozen=True)
class EnsureRevision:
    """Create or update a revision's Deployment and Service (and its HPA, if autoscaled)."""

    revision: str
    predictor: Predictor
    role: Role
    replicas: int | None
    """None when someone else owns the replica count: the replicas router, or the
    revision's HPA once the Deployment is up (it is set only to start it)."""

    autoscaler_min_replicas: int | None = None
    """With predictor.autoscaling: the minReplicas the revision's HPA must have now."""


@dataclass(frozen=True)
class ScaleRevision:
    revision: str
    replicas: int


@dataclass(frozen=True)
class DeleteAutoscaler:
    """Remove a retired revision's HPA, before it is scaled to zero."""

    revision: str


@dataclass(frozen=True)
class SetWeights:
    """One router update: revision -> percent, summing to 100. Revisions left out get none."""

    weights: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, weights: Mapping[str, int]) -> SetWeights:
        return cls(tuple(sorted(weights.items())))

    def as_dict(self) -> dict[str, int]:
        return dict(self.weights)


@dataclass(frozen=True)
class DeleteRevision:
    """Remove a revision that fell out of the history: it can no longer be restored."""

    revision: str


@dataclass(frozen=True)
class DeleteDrill:
    """Prune a finished RollbackDrill whose result the status already holds."""

    name: str


Action = (
    EnsureRevision | ScaleRevision | DeleteAutoscaler | SetWeights | DeleteRevision | DeleteDrill
)


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float = 30.0
    """Seconds until the next pass should look again."""
