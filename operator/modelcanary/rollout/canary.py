"""The canary itself: start a candidate, walk its steps, promote it or roll it back.

Every weight change is confirmed before the rollout moves on: the router must
read back the weight it was given (Argo Rollouts' VerifyWeight). A promotion
needs evidence: an evaluation that passed at 100%, after the bake began. A
rollback sends all traffic to the last known-good revision in one router
update and keeps the failed candidate at zero replicas for inspection.
"""

from __future__ import annotations

from modelcanary.analysis.verdicts import number
from modelcanary.api.base import parse_duration
from modelcanary.api.judging import (
    AnalysisStatus,
)
from modelcanary.api.modeldeployment import (
    KnownGood,
    Phase,
    RevisionOutcome,
)
from modelcanary.rollout import deadline, visibility, warm
from modelcanary.rollout.analysis import (
    Gate,
    apply_evaluation,
    compared_with_stable,
    passed_since,
    seconds_until_due,
)
from modelcanary.rollout.decision import SetWeights
from modelcanary.rollout.pause import pause_step
from modelcanary.rollout.state import POLL_SECONDS, Pass


def start(work: Pass, revision: str) -> None:
    """Begin a canary for ``revision`` at 0%."""
    status = work.status
    if revision == status.stable_revision:
        raise ValueError(f"revision {revision} is stable; it cannot be its own canary")
    status.canary_revision = revision
    status.canary_weight = 0
    status.current_step = 0
    status.step_started_at = work.now
    status.canary_unavailable_since = work.now
    status.analysis = AnalysisStatus() if work.spec.analysis is not None else None
    status.paused = False
    status.promote_full = False
    status.phase = Phase.PROGRESSING
    status.message = f"canary {revision} started"
    work.record(
        revision, RevisionOutcome.PROGRESSING, created_at=work.now, finished_at=None, reason=""
    )
    work.ensure(revision, work.spec.predictor, "canary")
    work.event("CanaryStarted", f"revision {revision} ({_model(work)}) starts at 0%")
    work.requeue(POLL_SECONDS)


def _model(work: Pass) -> str:
    model = work.spec.predictor.model
    return f"{model.name} {model.version}"


def progress(work: Pass) -> None:
    """One pass over a running canary, and when the next look at Prometheus is due."""
    _progress(work)
    # Asked of the status this pass leaves, not the one it found: a pass that
    # confirms a new weight and enters a pause in one go owes the candidate its
    # first look at once. Asked before the walk, the weight was still 0, a
    # threshold-only analysis had nothing due, and the pause slept the safety
    # resync (minutes) with the candidate taking traffic unjudged (bench-scale
    # found canaries that never looked).
    due = seconds_until_due(work.spec, work.status, work.now)
    if due is not None:
        # A look due now did not run this pass (the weight moved): the next pass
        # runs it; 0.5 s lets the router settle. A later look is kept to the
        # instant: hurried looks come every quarter interval.
        work.requeue(due if due > 0 else 0.5)


def _progress(work: Pass) -> None:
    status = work.status
    canary = status.canary_revision
    stable = status.stable_revision
    assert canary is not None
    work.ensure(canary, work.spec.predictor, "canary")
    if stable is not None:
        work.ensure_known(stable, "stable")

    gate, reason = apply_evaluation(work)
    if gate is Gate.FAIL:
        if work.spec.rollback.automatic:
            rollback(work, reason)
        else:
            status.phase = Phase.FAILED
            status.message = (
                f"analysis failed: {reason}; automatic rollback is off (abort or promote)"
            )
        return
    late = deadline.overdue(work, canary)
    if late is not None:
        _deadline_passed(work, canary, late)
        return

    if not work.router_owns_replicas and not work.available(canary):
        status.phase = Phase.PROGRESSING
        status.message = f"waiting for candidate {canary} to become Available"
        work.requeue(POLL_SECONDS)
        return
    if gate is Gate.HOLD:
        status.phase = Phase.PAUSED if status.paused else Phase.PROGRESSING
        status.message = reason
        return
    if status.paused:
        status.phase = Phase.PAUSED
        status.message = "paused by a person; resume or promote to go on"
        return
    _walk(work)


def _deadline_passed(work: Pass, canary: str, reason: str) -> None:
    """Abort back to stable; with automatic rollback off, stop in Failed as for analysis."""
    status = work.status
    if work.spec.rollback.automatic:
        abort(work, reason, event=deadline.EVENT_REASON)
        return
    if status.phase is not Phase.FAILED:
        work.event(deadline.EVENT_REASON, f"candidate {canary}: {reason}", warning=True)
    status.phase = Phase.FAILED
    status.message = f"{reason}; automatic rollback is off (abort or promote)"


def _walk(work: Pass) -> None:
    """Advance through as many steps as are ready now."""
    status = work.status
    steps = work.spec.strategy.steps
    if status.promote_full:
        _promote_full(work)
        return
    for _ in range(len(steps) + 1):
        index = status.current_step or 0
        if index >= len(steps):
            _bake(work)
            return
        step = steps[index]
        if step.set_weight is not None:
            if (
                status.canary_weight == 0
                and step.set_weight > 0
                and not work.confirmed_canary_weight(
                    status.canary_revision or "", status.stable_revision, step.set_weight
                )
                and not visibility.may_send_traffic(work)
            ):
                return
            if step.set_weight >= 100 and not _may_take_all(work):
                return
            if not _set_weight(work, step.set_weight):
                return
        elif not pause_step(work, step.pause):
            return
        status.current_step = index + 1
        status.step_started_at = work.now


def _may_take_all(work: Pass) -> bool:
    """Before 100%: the count metrics have compared the candidate with stable (or it is
    there already, e.g. after a restart)."""
    canary = work.status.canary_revision
    assert canary is not None
    if compared_with_stable(work) or work.confirmed_canary_weight(
        canary, work.status.stable_revision, 100
    ):
        return True
    work.status.phase = Phase.PROGRESSING
    work.status.message = (
        f"holding at {work.status.canary_weight}% until the count metrics have compared the "
        "candidate with stable: at 100% stable serves nothing to compare with"
    )
    work.requeue(POLL_SECONDS)
    return False


def _set_weight(work: Pass, weight: int) -> bool:
    status = work.status
    canary, stable = status.canary_revision, status.stable_revision
    assert canary is not None
    if work.confirmed_canary_weight(canary, stable, weight):
        if status.canary_weight != work.expected_canary_weight(weight):
            work.event(
                "WeightSet", f"candidate {canary} takes {work.expected_canary_weight(weight)}%"
            )
        status.canary_weight = work.expected_canary_weight(weight)
        return True
    router = work.observed.router
    if router.weights is None and router.error is not None:
        # Never step toward the candidate blind (the drill holds its shift the
        # same way); a rollback to stable still goes ahead, see ``_end_canary``.
        status.message = f"waiting for the router before setting {weight}%: {router.error}"
        work.requeue(POLL_SECONDS)
        return False
    if not _sized_for(work, canary, weight):
        return False
    weights = {canary: weight}
    if stable is not None:
        weights[stable] = 100 - weight
    work.emit(SetWeights.of(weights))
    status.phase = Phase.PROGRESSING
    status.message = (
        f"setting the candidate's weight to {weight}%; waiting for the router to confirm"
    )
    work.requeue(POLL_SECONDS)
    return False


def _sized_for(work: Pass, canary: str, weight: int) -> bool:
    """An autoscaled candidate takes a weight only with the pods that weight needs ready."""
    predictor = work.spec.predictor
    if predictor.autoscaling is None:
        return True
    floor = work.autoscaler_floor(canary, predictor, "canary", weight)
    seen = work.observed.revisions.get(canary)
    ready = seen.ready_replicas if seen is not None else 0
    if ready >= floor:
        return True
    work.ensure(canary, predictor, "canary")
    work.status.phase = Phase.PROGRESSING
    work.status.message = (
        f"scaling candidate {canary} to at least {floor} pods before it takes {weight}% "
        f"({ready} ready)"
    )
    work.requeue(POLL_SECONDS)
    return False


def _bake(work: Pass) -> None:
    status = work.status
    bake = parse_duration(work.spec.strategy.bake.duration)
    started = status.step_started_at or work.now
    elapsed = work.now - started
    status.phase = Phase.BAKING
    if elapsed < bake:
        status.message = f"baking at 100% for {work.spec.strategy.bake.duration}"
        work.requeue((bake - elapsed).total_seconds())
        return
    if not passed_since(work, started):
        status.message = "baked; waiting for an evaluation that passes at 100% before promoting"
        return
    promote(work, note="")


def _promote_full(work: Pass) -> None:
    status = work.status
    canary = status.canary_revision
    assert canary is not None
    if not _set_weight(work, 100):
        return
    promote(work, note="promoted by hand (promote --full): steps and bake skipped")


def promote(work: Pass, *, note: str) -> None:
    """The candidate becomes stable and the new last known-good revision."""
    status = work.status
    canary, previous = status.canary_revision, status.stable_revision
    assert canary is not None
    evidence = list(status.analysis.results) if status.analysis else []
    if work.spec.analysis is None and not note:
        note = "no analysis configured: promoted after its steps without metric evidence"
    status.last_known_good = KnownGood(
        revision=canary,
        model=work.spec.predictor.model,
        promoted_at=work.now,
        evidence=evidence,
        note=note,
    )
    work.record(
        canary,
        RevisionOutcome.PROMOTED,
        note or "passed analysis",
        finished_at=work.now,
        evidence=evidence,
    )
    if previous is not None and previous != canary:
        entry = work.entry(previous)
        if entry is not None and entry.outcome is RevisionOutcome.PROGRESSING:
            entry.outcome = RevisionOutcome.SUPERSEDED
    status.stable_revision = canary
    _clear_canary(work)
    status.phase = Phase.HEALTHY
    status.message = f"revision {canary} promoted" + (f" ({note})" if note else "")
    work.ensure(canary, work.spec.predictor, "stable", force=True)
    work.emit(SetWeights.of({canary: 100}))
    if previous is not None and previous != canary:
        warm.keep_after_promotion(work, previous)
    summary = ", ".join(f"{r.metric}={_value(r.candidate)} {r.verdict}" for r in evidence)
    work.event(
        "Promoted",
        f"revision {canary} is stable and last known-good" + (f": {summary}" if summary else ""),
    )


def _value(value: float | None) -> str:
    return number(value) if value is not None else "n/a"


def _clear_canary(work: Pass) -> None:
    status = work.status
    status.canary_revision = None
    status.canary_weight = 0
    status.current_step = None
    status.step_started_at = None
    status.paused = False
    status.promote_full = False
    status.canary_unavailable_since = None


def rollback(work: Pass, reason: str) -> None:
    """All traffic to the last known-good revision in one router update."""
    _end_canary(work, RevisionOutcome.ROLLED_BACK, reason)
    work.event(
        "RolledBack", f"rolled back to {work.status.stable_revision}: {reason}", warning=True
    )


def abort(
    work: Pass,
    reason: str,
    outcome: RevisionOutcome = RevisionOutcome.ABORTED,
    *,
    event: str = "Aborted",
) -> None:
    """Stop the candidate and send all traffic back to stable."""
    _end_canary(work, outcome, reason)
    work.event(
        event,
        f"candidate aborted, all traffic to {work.status.stable_revision}: {reason}",
        warning=True,
    )


def _end_canary(work: Pass, outcome: RevisionOutcome, reason: str) -> None:
    status = work.status
    canary = status.canary_revision
    assert canary is not None
    target = status.last_known_good.revision if status.last_known_good else status.stable_revision
    evidence = list(status.analysis.results) if status.analysis else []
    work.record(canary, outcome, reason, finished_at=work.now, evidence=evidence)
    if target is not None:
        # Even when the router cannot be read: all traffic to the known-good
        # revision is one absolute request, safe to make blind and to repeat.
        work.emit(SetWeights.of({target: 100}))
        work.ensure_known(target, "stable")
        status.stable_revision = target
    work.retire(canary)
    _clear_canary(work)
    status.phase = Phase.ROLLED_BACK
    verb = "rolled back" if outcome is RevisionOutcome.ROLLED_BACK else outcome.value.lower()
    status.message = f"{canary} {verb}: {reason}"
