"""The pure decision core: ``decide(spec, status, observations, now) -> Decision``.

It imports no kopf, no kr8s and no HTTP (an import-linter contract holds it to
that), so every branch of the rollout is a plain function call in tests: build
a status and what the edges saw, call ``decide``, look at the result.

Level-based, not edge-based: each pass looks at the whole situation (the
desired revision, the status written by the last pass, what the cluster and
the router really show) and decides from scratch. A restarted operator, or a
pass repeated after a crash between acting and writing status, reaches the
same decision, and every action it asks for is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from modelcanary.api.modeldeployment import (
    HistoryEntry,
    KnownGood,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    Predictor,
    RevisionOutcome,
)
from modelcanary.api.validation import FieldError
from modelcanary.rollout import actions, canary, conditions, warm
from modelcanary.rollout.decision import Decision, DeleteRevision, Event
from modelcanary.rollout.drill_results import record_drills
from modelcanary.rollout.observations import Observations
from modelcanary.rollout.state import IDLE_SECONDS, POLL_SECONDS, Pass

FIRST_REVISION_NOTE = "first revision: nothing to compare it with, so it went straight to 100%"


def decide(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    observed: Observations,
    now: datetime,
    *,
    generation: int | None = None,
) -> Decision:
    work = Pass(
        spec=spec,
        status=status.deep_copy(),
        observed=observed,
        now=now,
        desired=spec.predictor.revision(),
    )
    work.status.observed_generation = generation
    action = observed.action
    last = work.status.last_action
    if action is not None and (last is None or last.id != action.id):
        actions.handle(work, action)

    if work.status.canary_revision is not None:
        if work.status.canary_revision != work.desired:
            superseded = work.status.canary_revision
            canary.abort(
                work,
                f"superseded by revision {work.desired}",
                outcome=RevisionOutcome.SUPERSEDED,
            )
            work.event("Superseded", f"{superseded} is replaced by {work.desired} mid-canary")
            _start_or_refuse(work)
        else:
            canary.progress(work)
    elif work.status.restoring is not None:
        _restore(work)
    elif work.status.stable_revision is None:
        _first_revision(work)
    elif work.desired != work.status.stable_revision:
        _start_or_refuse(work)
    else:
        _steady(work)

    warm.settle(work)
    _trim_history(work)
    record_drills(work)
    conditions.derive(work.status, now, generation, serving=_serving(work))
    return work.decision()


def decide_invalid(
    status: ModelDeploymentStatus,
    errors: Sequence[FieldError],
    now: datetime,
    *,
    generation: int | None = None,
) -> Decision:
    """A spec the models refuse: say so, and touch nothing (traffic stays where it is)."""
    new = status.deep_copy()
    message = "; ".join(str(error) for error in errors)
    was_invalid = any(c.type == "InvalidSpec" and c.status == "True" for c in new.conditions)
    previous_message = next((c.message for c in new.conditions if c.type == "InvalidSpec"), "")
    new.phase = Phase.INVALID
    new.message = f"invalid spec: {message}"
    new.observed_generation = generation
    conditions.set_condition(
        new,
        "InvalidSpec",
        value=True,
        reason="InvalidSpec",
        message=message,
        now=now,
        generation=generation,
    )
    events: tuple[Event, ...] = ()
    if not was_invalid or previous_message != message:
        events = (Event("Warning", "InvalidSpec", message),)
    return Decision(new, (), events, IDLE_SECONDS)


def _serving(work: Pass) -> bool:
    stable = work.status.stable_revision
    if stable is None:
        return False
    if work.router_owns_replicas:
        weights = work.observed.router.weights or {}
        return sum(weights.values()) == 100
    return work.available(stable)


def _first_revision(work: Pass) -> None:
    """Nothing to compare the first revision with: straight to 100%."""
    status = work.status
    revision = work.desired
    for entry in status.history:
        # The spec changed before an earlier first revision reached 100%.
        if entry.revision != revision and entry.outcome is RevisionOutcome.PROGRESSING:
            entry.outcome = RevisionOutcome.SUPERSEDED
            entry.finished_at = work.now
    work.scale_down_others({revision})
    if work.entry(revision) is None:
        work.record(revision, RevisionOutcome.PROGRESSING, "first revision")
        work.event("FirstRevision", f"revision {revision} is the first: it goes straight to 100%")
    waiting = f"waiting for the first revision {revision} to become Available"
    routing = f"routing 100% to the first revision {revision}"
    if not _serve_all(work, revision, work.spec.predictor, waiting=waiting, routing=routing):
        return
    status.stable_revision = revision
    status.last_known_good = KnownGood(
        revision=revision,
        model=work.spec.predictor.model,
        promoted_at=work.now,
        evidence=[],
        note=FIRST_REVISION_NOTE,
    )
    work.record(revision, RevisionOutcome.PROMOTED, FIRST_REVISION_NOTE, finished_at=work.now)
    status.phase = Phase.HEALTHY
    # The message a later pass at rest writes too: a different one here cost
    # every new object one more status write (and its re-reads) at its next pass.
    status.message = f"revision {revision} serves 100%"
    work.event("Promoted", f"{status.message} ({FIRST_REVISION_NOTE})")


def _start_or_refuse(work: Pass) -> None:
    drill = work.observed.drill
    if drill is not None and work.failed_before(work.desired) is None:
        # A drill moves traffic and puts it back; a canary waits for that.
        _steady(work)
        work.status.phase = Phase.PROGRESSING
        work.status.message = f"waiting for drill {drill.name} to finish before the canary starts"
        work.requeue(POLL_SECONDS)
        return
    failed = work.failed_before(work.desired)
    if failed is not None:
        _steady(work)
        status = work.status
        status.phase = Phase.ROLLED_BACK
        status.message = (
            f"revision {work.desired} was {_ended(failed.outcome)} ({failed.reason}); "
            "change spec.predictor, or retry it"
        )
        return
    canary.start(work, work.desired)


def _ended(outcome: RevisionOutcome) -> str:
    return {RevisionOutcome.ROLLED_BACK: "rolled back", RevisionOutcome.ABORTED: "aborted"}.get(
        outcome, outcome.value.lower()
    )


def _steady(work: Pass) -> None:
    """No canary: keep the stable revision whole and at 100%, everything else at zero."""
    status = work.status
    stable = status.stable_revision
    assert stable is not None
    work.ensure_known(stable, "stable")
    drill = work.observed.drill
    if drill is not None:
        # The drill owns the split and its target's replicas until it is done.
        if drill.target is not None:
            work.scale_down_others({stable, drill.target} | warm.kept_warm(work))
        status.message = f"revision {stable} is stable; drill {drill.name} in progress"
        work.requeue(POLL_SECONDS)
        return
    routed = work.route({stable: 100})
    weights = work.observed.router.weights
    if not routed and weights:
        work.event(
            "WeightDrift",
            f"router read back {dict(weights)}; restoring 100% to {stable}",
            warning=True,
        )
    work.scale_down_others({stable} | warm.kept_warm(work))
    if status.phase not in (Phase.ROLLED_BACK, Phase.FAILED) or work.desired == stable:
        status.phase = Phase.HEALTHY
        status.message = f"revision {stable} serves 100%"
    work.requeue(IDLE_SECONDS)


def _serve_all(
    work: Pass, revision: str, predictor: Predictor, *, waiting: str, routing: str
) -> bool:
    """Run ``revision`` as stable and give it 100% once it can serve; True when it has."""
    status = work.status
    work.ensure(revision, predictor, "stable")
    status.phase = Phase.PROGRESSING
    if not work.router_owns_replicas and not work.available(revision):
        status.message = waiting
        work.requeue(POLL_SECONDS)
        return False
    if not work.route({revision: 100}):
        status.message = routing
        return False
    return True


def _restore(work: Pass) -> None:
    """rollback --to: bring a revision from the history back to 100%."""
    status = work.status
    target = status.restoring
    assert target is not None
    entry = work.entry(target)
    if entry is None:
        status.restoring = None
        status.message = f"cannot restore {target}: it is no longer in the history"
        return
    waiting = f"restoring {target}: waiting for it to become Available"
    routing = f"restoring {target}: routing 100% to it"
    if not _serve_all(work, target, entry.predictor, waiting=waiting, routing=routing):
        return
    status.stable_revision = target
    status.restoring = None
    status.last_known_good = KnownGood(
        revision=target,
        model=entry.predictor.model,
        promoted_at=work.now,
        evidence=entry.evidence,
        note="restored by rollback --to",
    )
    work.record(target, RevisionOutcome.PROMOTED, "restored by rollback --to", finished_at=work.now)
    work.scale_down_others({target})
    status.phase = Phase.ROLLED_BACK if work.desired != target else Phase.HEALTHY
    status.message = f"revision {target} restored to 100% by hand"
    work.event("Restored", status.message)


def _trim_history(work: Pass) -> None:
    """Keep the revisionHistoryLimit most recently used entries, and any still in use.

    Recency is the entry's last moment of use, not its place in the list: a
    revision brought back by ``rollback --to`` keeps its old place, yet it is
    what served until the latest promotion and the first thing to go back to.
    """
    status = work.status
    keep = {
        status.stable_revision,
        status.canary_revision,
        status.restoring,
        status.previous_revision,
        status.last_known_good.revision if status.last_known_good else None,
    }
    by_recency = sorted(status.history, key=_last_used, reverse=True)  # stable: ties keep order
    recent = {entry.revision for entry in by_recency[: work.spec.revision_history_limit]}
    kept: list[HistoryEntry] = []
    for entry in status.history:
        if entry.revision in recent or entry.revision in keep:
            kept.append(entry)
        elif entry.revision in work.observed.revisions:
            work.emit(DeleteRevision(entry.revision))
    status.history = kept


def _last_used(entry: HistoryEntry) -> datetime:
    return max(entry.created_at, entry.finished_at or entry.created_at)
