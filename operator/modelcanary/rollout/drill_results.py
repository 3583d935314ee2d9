"""Recording finished rollback drills in the ModelDeployment's status, and pruning them.

The drill executor writes each drill's own status; the ModelDeployment pass
is the only writer of the ModelDeployment's status (one patch per pass), so
it is here, not in the executor, that a finished drill becomes ``lastDrill``,
an entry of ``drillHistory`` and, through the conditions, ``RollbackReady``.

Pruning follows from that order. A RollbackDrill object is deleted only once
its result is in the *stored* status (or it was refused and showed nothing),
so an operator that dies between the delete and the status write loses no
result: the delete waits for a pass whose status is already written.
"""

from __future__ import annotations

from datetime import datetime

from modelcanary.api.modeldeployment import (
    MAX_DRILL_HISTORY,
    DrillSummary,
)
from modelcanary.rollout.decision import DeleteDrill
from modelcanary.rollout.observations import FinishedDrill
from modelcanary.rollout.state import Pass

DEFAULT_DRILL_OBJECTS_KEPT = 5
"""RollbackDrill objects kept per ModelDeployment without a ``spec.drill``."""


def _started(summary: DrillSummary) -> datetime:
    return summary.started_at


def record_drills(work: Pass) -> None:
    finished = work.observed.finished_drills
    if not finished:
        return
    status = work.status
    stored = list(status.drill_history)
    known = {entry.name for entry in stored}
    new = [d.summary for d in finished if d.summary is not None and d.summary.name not in known]
    if new:
        merged = sorted(stored + new, key=_started, reverse=True)[:MAX_DRILL_HISTORY]
        status.drill_history = merged
        status.last_drill = merged[0]
        for summary in new:
            if summary.name in {entry.name for entry in merged}:
                _announce(work, summary)
    _prune(work, finished, stored)


def _announce(work: Pass, summary: DrillSummary) -> None:
    if summary.succeeded:
        restore = (
            f", time to restore {summary.time_to_restore_seconds:g}s"
            if summary.time_to_restore_seconds is not None
            else ""
        )
        work.event("DrillSucceeded", f"{summary.mode} drill {summary.name} passed{restore}")
    else:
        work.event(
            "DrillFailed", f"{summary.mode} drill {summary.name}: {summary.reason}", warning=True
        )


def _prune(work: Pass, finished: tuple[FinishedDrill, ...], stored: list[DrillSummary]) -> None:
    keep = work.spec.drill.history_limit if work.spec.drill else DEFAULT_DRILL_OBJECTS_KEPT
    recorded = {entry.name for entry in stored}
    oldest_kept = stored[-1].started_at if len(stored) >= MAX_DRILL_HISTORY else None

    def sort_key(drill: FinishedDrill) -> datetime:
        if drill.summary is not None:
            return drill.summary.started_at
        return drill.ended_at or datetime.min.replace(tzinfo=work.now.tzinfo)

    for drill in sorted(finished, key=sort_key, reverse=True)[keep:]:
        summary = drill.summary
        safe = (
            summary is None
            or drill.name in recorded
            # Older than a full history's oldest entry: the status would drop it anyway.
            or (oldest_kept is not None and summary.started_at < oldest_kept)
        )
        if safe:
            work.emit(DeleteDrill(drill.name))
