"""Which revision a drill rehearses, and whether it may start at all.

Read once, when a drill is still Pending: everything here is about the
ModelDeployment as the drill finds it (its router, a canary or restore in
progress, its history), never about a step of the drill itself
(``drills.plan``). A refusal moves no traffic and creates nothing.
"""

from __future__ import annotations

from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionOutcome,
)
from modelcanary.rollout.observations import RouterObservation


def drill_target(status: ModelDeploymentStatus) -> str | None:
    """The revision a rollback would restore if the current stable went bad."""
    for entry in status.history:
        if entry.outcome is RevisionOutcome.PROMOTED and entry.revision != status.stable_revision:
            return entry.revision
    return status.last_known_good.revision if status.last_known_good else None


def refusal(
    md_spec: ModelDeploymentSpec,
    md_status: ModelDeploymentStatus,
    *,
    router: RouterObservation,
    other_drill_running: str | None,
) -> str | None:
    """Why a drill of this ModelDeployment may not start now; None when it may."""
    if md_spec.traffic.replicas is not None:
        # One shared Service serves every Ready pod, so the rehearsed revision
        # could not be held at 0% (verify) or at a chosen slice (warm).
        return "drills need a router that can hold a Ready revision at 0%: use gatewayAPI"
    if md_status.canary_revision is not None:
        return f"a canary of {md_status.canary_revision} is in progress"
    if md_status.restoring is not None:
        return f"revision {md_status.restoring} is being restored"
    if other_drill_running:
        return f"drill {other_drill_running} is already running"
    if md_status.stable_revision is None:
        return "the ModelDeployment has no stable revision yet"
    if drill_target(md_status) is None:
        return "there is no known-good revision to rehearse"
    if router.weights is None:
        # Without the weights as found, they could not be put back exactly.
        return f"the router's weights cannot be read: {router.error or 'no route yet'}"
    return None
