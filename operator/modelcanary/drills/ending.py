"""How a drill ends, and what its ModelDeployment keeps of it.

Apart from the plan because three readers need only this: the drill's
executor (stop at an end), the view of a model's drills (which ones have
ended, and their summaries for ``status.lastDrill``) and sharded mode's feed
(an ended drill wants no loop).
"""

from __future__ import annotations

from modelcanary.api.modeldeployment import DrillSummary
from modelcanary.api.rollbackdrill import DrillPhase, RollbackDrillSpec, RollbackDrillStatus

FINISHED = frozenset({DrillPhase.SUCCEEDED, DrillPhase.FAILED, DrillPhase.REFUSED})
"""The phases a drill ends in: its executor stops, its ModelDeployment records it."""


def summary_of(
    name: str, spec: RollbackDrillSpec, status: RollbackDrillStatus
) -> DrillSummary | None:
    """A finished drill as ModelDeployment.status records it; None unless it ran to an end.

    A refused drill rehearsed nothing, so it says nothing about readiness.
    """
    if status.phase not in (DrillPhase.SUCCEEDED, DrillPhase.FAILED) or status.started_at is None:
        return None
    return DrillSummary(
        name=name,
        mode=spec.mode,
        succeeded=status.phase is DrillPhase.SUCCEEDED,
        revision=status.revisions.last_known_good if status.revisions else None,
        started_at=status.started_at,
        finished_at=status.finished_at,
        time_to_ready_seconds=status.time_to_ready_seconds,
        time_to_restore_seconds=status.time_to_restore_seconds,
        time_to_healthy_seconds=status.time_to_healthy_seconds,
        reason=status.reason,
    )
