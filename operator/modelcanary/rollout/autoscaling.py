"""How many pods an autoscaled revision must keep, whatever its HPA would choose.

With ``predictor.autoscaling`` each revision has its own HorizontalPodAutoscaler,
and the operator never writes ``spec.replicas`` of a running revision: the HPA
owns it. The operator steers only through the HPA's ``minReplicas``:

* a candidate's minimum follows its share of the traffic: ceil(weight% of the
  stable's current replicas), at least the user's minReplicas and at most
  maxReplicas. It is raised *before* the weight moves, and the weight waits
  until that many pods are ready, so a step to 50% never lands on a candidate
  sized for 10%. It never goes down during a canary: as traffic leaves the
  stable its own HPA may shrink it, and the candidate must not follow it down;
* a promoted revision keeps its canary minimum until it has that many ready
  pods, and only then gets the user's minReplicas back (flagger#1600, where
  the new primary restarted at minReplicas). From there its HPA scales it
  down, if the load allows, at the pace of its scale-down stabilization
  window (5 minutes unless the HPA's behavior says otherwise), not at once;
* a rollback leaves the stable revision's HPA alone.
"""

from __future__ import annotations

import math

from modelcanary.api.modeldeployment import Autoscaling
from modelcanary.rollout.decision import Role
from modelcanary.rollout.observations import RevisionObservation


def canary_floor(
    autoscaling: Autoscaling,
    *,
    weight: int,
    stable_replicas: int | None,
    seen: RevisionObservation | None,
) -> int:
    """The candidate's HPA minReplicas for taking ``weight`` percent of the traffic."""
    floor = autoscaling.min_replicas
    if stable_replicas:
        floor = max(floor, math.ceil(weight * stable_replicas / 100))
    if seen is not None and seen.autoscaler_min_replicas is not None:
        floor = max(floor, seen.autoscaler_min_replicas)
    return min(floor, autoscaling.max_replicas)


def stable_floor(autoscaling: Autoscaling, seen: RevisionObservation | None) -> int:
    """The stable's HPA minReplicas: the user's, once a promoted canary's floor is met."""
    floor = autoscaling.min_replicas
    held = seen.autoscaler_min_replicas if seen is not None else None
    if held is not None and held > floor and seen is not None and seen.ready_replicas < held:
        floor = held
    return min(floor, autoscaling.max_replicas)


def start_replicas(autoscaling: Autoscaling, replicas: int, floor: int, role: Role) -> int:
    """The count a revision's Deployment starts (or wakes from zero) with.

    An HPA does not scale a Deployment at zero replicas, so the operator starts
    it: a candidate at its floor (sized for its first weight, not for all the
    traffic), a stable revision at ``predictor.replicas`` within the floor and
    maxReplicas. From then on the count is the HPA's.
    """
    if role == "canary":
        return floor
    return min(max(replicas, floor), autoscaling.max_replicas)
