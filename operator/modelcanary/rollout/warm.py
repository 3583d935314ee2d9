"""The scale-down delay: the previous stable revision stays warm for a while after a promotion.

A fault often shows a minute after the promotion, not during the canary. If
the previous revision were scaled to zero at once, rolling back to it would
wait for a cold start (for a model server: scheduling, pulling, loading the
model). Argo Rollouts keeps it for ``scaleDownDelaySeconds`` (default 30 s)
and SageMaker keeps the old fleet through its bake; here
``strategy.scaleDownDelay`` (default 30s) does the same, so a ``rollback
--to`` inside the window routes to pods that are already Ready.

The window is recorded in the status (``previousRevision``, ``scaleDownAt``)
so a restarted operator keeps it and scales down on time. It closes early,
and the previous revision is scaled down, when a new canary starts or another
revision is being restored: it is then no longer the way back, and keeping a
third fleet warm is a cost nobody asked for (Argo also scales the old
ReplicaSet down when a newer rollout starts). The replicas router does not
use the delay: every ready pod behind its shared Service takes traffic, so a
warm previous revision would still be serving.
"""

from __future__ import annotations

from modelcanary.api.base import parse_duration
from modelcanary.rollout.state import Pass


def keep_after_promotion(work: Pass, previous: str) -> None:
    """``previous`` has just been replaced as stable: keep it warm, or scale it down now."""
    delay = parse_duration(work.spec.strategy.scale_down_delay)
    if work.router_owns_replicas or delay.total_seconds() <= 0:
        work.retire(previous)
        return
    work.status.previous_revision = previous
    work.status.scale_down_at = work.now + delay
    work.requeue(delay.total_seconds())


def _window_open(work: Pass) -> bool:
    status = work.status
    return (
        status.previous_revision is not None
        and status.scale_down_at is not None
        and work.now < status.scale_down_at
        and status.canary_revision is None
        and status.restoring is None
        and not work.router_owns_replicas
    )


def kept_warm(work: Pass) -> set[str]:
    """The previous revision while its window is open: steady state leaves it alone."""
    previous = work.status.previous_revision
    return {previous} if previous is not None and _window_open(work) else set()


def settle(work: Pass) -> None:
    """Once per pass: scale the previous revision down when its window has closed."""
    status = work.status
    previous = status.previous_revision
    if previous is None:
        status.scale_down_at = None
        return
    if _window_open(work):
        assert status.scale_down_at is not None
        work.requeue((status.scale_down_at - work.now).total_seconds())
        return
    # Serving again (restored, the candidate once more, or a running drill's target):
    # it is no longer "previous", and whoever uses it now owns its replicas.
    drill = work.observed.drill
    in_use = {
        status.stable_revision,
        status.canary_revision,
        status.restoring,
        drill.target if drill is not None else None,
    }
    seen = work.observed.revisions.get(previous)
    if previous not in in_use and seen is not None and seen.exists and seen.desired_replicas:
        work.retire(previous)
    status.previous_revision = None
    status.scale_down_at = None
