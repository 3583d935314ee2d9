"""Standard conditions, derived from the status after every pass.

Conditions repeat what the phase says in the form tools expect (``kubectl
wait --for=condition=Ready``, alerting on ``Degraded``). A condition keeps its
``lastTransitionTime`` until its status really changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from modelcanary.api.modeldeployment import (
    Condition,
    ModelDeploymentStatus,
    Phase,
)
from modelcanary.rollout import deadline


def set_condition(
    status: ModelDeploymentStatus,
    kind: str,
    *,
    value: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> None:
    text: Literal["True", "False", "Unknown"] = (
        "Unknown" if value is None else ("True" if value else "False")
    )
    previous = next((c for c in status.conditions if c.type == kind), None)
    if previous is not None and (previous.status, previous.reason, previous.message) == (
        text,
        reason,
        message,
    ):
        # Unchanged (every condition of an object at rest, every pass): the same
        # condition, with no model built and validated for it.
        condition = previous
        if previous.observed_generation != generation:
            condition = previous.model_copy(update={"observed_generation": generation})
    else:
        changed = previous is None or previous.status != text
        condition = Condition(
            type=kind,
            status=text,
            reason=reason,
            message=message,
            last_transition_time=now
            if changed or previous is None
            else previous.last_transition_time,
            observed_generation=generation,
        )
    status.conditions = [c for c in status.conditions if c.type != kind] + [condition]


def derive(
    status: ModelDeploymentStatus, now: datetime, generation: int | None, *, serving: bool
) -> None:
    """Ready, Progressing, Degraded, AnalysisHealthy and InvalidSpec from the status."""

    def put(kind: str, value: bool | None, reason: str, message: str) -> None:
        set_condition(
            status,
            kind,
            value=value,
            reason=reason,
            message=message,
            now=now,
            generation=generation,
        )

    phase = status.phase
    stable_serves = f"stable revision {status.stable_revision} serves"
    put(
        "Ready",
        serving,
        "Serving" if serving else "NotServing",
        stable_serves if serving else status.message,
    )
    in_canary = status.canary_revision is not None
    put(
        "Progressing",
        in_canary,
        phase.value if in_canary else "Idle",
        status.message if in_canary else "no canary in progress",
    )
    degraded = phase in (Phase.ROLLED_BACK, Phase.FAILED)
    put(
        "Degraded",
        degraded,
        _degraded_reason(status) if degraded else "AsDesired",
        status.message if degraded else "",
    )
    analysis = status.analysis
    if analysis is None or analysis.outcome is None:
        put("AnalysisHealthy", True, "NoEvaluation", "no evaluation yet")
    else:
        # An Error is unhealthy like a Fail: the query is wrong and will stay wrong until
        # someone fixes it. NoData and Outage are Unknown: nothing was learned either way.
        healthy = {"Pass": True, "Fail": False, "Error": False}.get(analysis.outcome)
        put("AnalysisHealthy", healthy, analysis.outcome, analysis.reason or "all metrics pass")
    put("InvalidSpec", False, "Valid", "")
    drill = status.last_drill
    if drill is None:
        put("RollbackReady", None, "NoDrillYet", "no rollback drill has run yet")
    elif drill.succeeded:
        put("RollbackReady", True, "DrillSucceeded", f"{drill.mode} drill {drill.name} passed")
    else:
        put(
            "RollbackReady",
            False,
            "DrillFailed",
            f"{drill.mode} drill {drill.name}: {drill.reason}",
        )


def _degraded_reason(status: ModelDeploymentStatus) -> str:
    """The phase, or ProgressDeadlineExceeded while that is what the status message tells."""
    if deadline.EXCEEDED.search(status.message):
        return deadline.EVENT_REASON
    return status.phase.value
