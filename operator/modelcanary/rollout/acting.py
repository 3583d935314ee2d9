"""When a pass that would act may act on the watches' view, without reading the API server again.

A pass decides on the in-memory view first. When that decision would act or
write, the pass normally reads the API server again and decides once more
(``reconcile``): watches of different kinds are not ordered with each other,
and what a pass does must not rest on one that is behind another. The rules
here are the exceptions, each because nothing the re-read guards is at stake,
and each worth a measured share of a pass's requests (bench-scale); and which
revisions a pass gives all of the replicas router's replicas, so that a new
Deployment starts at that count. Pure: statuses and decisions in, answers out.
"""

from __future__ import annotations

from collections.abc import Collection

from modelcanary.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelcanary.rollout.decision import Action, Decision, SetWeights


def routine_look(before: ModelDeploymentStatus, decision: Decision) -> bool:
    """Whether the pass only records an analysis look: no action, no event, and nothing
    in the status but its ``analysis`` changed.

    Such a pass is decided on the view without reading the API server again: it
    writes what the look saw in Prometheus (read just now) and changes nothing
    the view could have misled it about, no phase, revision, weight, step,
    condition or history. Every look of every canary was one of these, and its
    re-reads were five requests of the six a look cost (bench-scale).
    """
    if decision.actions or decision.events:
        return False
    return decision.status.model_copy(update={"analysis": before.analysis}) == before


def routed_whole(spec: ModelDeploymentSpec, actions: Collection[Action]) -> frozenset[str]:
    """The revisions this pass gives 100% through the replicas router (which scales
    them to ``spec.predictor.replicas``); none with another router or autoscaling."""
    if spec.traffic.replicas is None or spec.predictor.autoscaling is not None:
        return frozenset()
    return frozenset(
        revision
        for action in actions
        if isinstance(action, SetWeights)
        for revision, weight in action.as_dict().items()
        if weight == 100
    )


def before_first_serving(status: ModelDeploymentStatus) -> bool:
    """Whether the ModelDeployment has never had a stable revision: its first one is
    on its way to 100%, and its passes act on the view without reading again.

    Nothing is served yet that a pass misled by a view behind the API server
    could hurt, and no drill runs without a stable revision. What such a pass
    can get wrong is idempotent: a Deployment or Service the view has not seen
    yet is created, and the 409 falls back to a read and a patch; a weight is
    set again; a Deployment the view still counts unready is waited for, and
    its watch event wakes the next pass. The re-read was four of the
    eighteen requests a new object cost (bench-scale, N=200), on every object
    created.
    """
    return (
        status.stable_revision is None
        and status.canary_revision is None
        and status.restoring is None
    )
