"""Manual actions: promote, promote --full, abort, pause, resume, retry, rollback --to.

A person asks through the annotation ``modelcanary.io/action`` (the CLI also
sets ``modelcanary.io/action-id``). Annotations are GitOps-safe: a GitOps tool
applies the manifest's own fields and leaves an annotation it never declared
alone, and the operator never writes the spec. Each request is handled once
per id and answered in ``status.lastAction``, accepted or not, with the reason
when it does not apply in the current phase.
"""

from __future__ import annotations

from modelcanary.api.modeldeployment import (
    ActionRecord,
    Phase,
    RevisionOutcome,
)
from modelcanary.rollout import canary
from modelcanary.rollout.analysis import restart_hold_clocks
from modelcanary.rollout.observations import ManualAction
from modelcanary.rollout.state import POLL_SECONDS, Pass

ACTIONS = ("promote", "promote-full", "abort", "pause", "resume", "retry", "rollback")
ANNOTATION = "modelcanary.io/action"
ANNOTATION_ID = "modelcanary.io/action-id"


def parse_action(value: str | None, action_id: str | None) -> ManualAction | None:
    """``promote``, ``rollback abc123`` or ``rollback:abc123`` -> a ManualAction."""
    if not value or not value.strip():
        return None
    words = value.replace(":", " ").split()
    kind = words[0].lower()
    if kind == "promote" and "--full" in words[1:]:
        kind = "promote-full"
    revision = words[1] if kind == "rollback" and len(words) > 1 else None
    return ManualAction(kind=kind, id=action_id or value.strip(), revision=revision)


def handle(work: Pass, action: ManualAction) -> None:
    """Carry out ``action`` if it applies now; record the answer either way."""
    handler = {
        "promote": _promote,
        "promote-full": _promote_full,
        "abort": _abort,
        "pause": _pause,
        "resume": _resume,
        "retry": _retry,
        "rollback": _rollback,
    }.get(action.kind)
    if handler is None:
        accepted, message = (
            False,
            f"unknown action {action.kind!r}; use one of {', '.join(ACTIONS)}",
        )
    else:
        accepted, message = handler(work, action)
    work.status.last_action = ActionRecord(
        id=action.id,
        action=action.kind,
        revision=action.revision,
        accepted=accepted,
        message=message,
        at=work.now,
    )
    work.event(
        "ActionAccepted" if accepted else "ActionRejected",
        f"{action.kind}: {message}",
        warning=not accepted,
    )
    work.requeue(POLL_SECONDS)


def _no_canary(work: Pass) -> str | None:
    if work.status.canary_revision is None:
        return f"no canary is in progress (phase {work.status.phase})"
    return None


def _promote(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if (refusal := _no_canary(work)) is not None:
        return False, refusal
    status = work.status
    steps = work.spec.strategy.steps
    index = status.current_step or 0
    status.paused = False
    if index >= len(steps):
        canary.promote(work, note="promoted by hand during the bake")
        return True, "promoted before the bake ended"
    step = steps[index]
    if step.set_weight is not None:
        return False, f"step {index} is setting the weight to {step.set_weight}%; wait for it"
    status.current_step = index + 1
    status.step_started_at = work.now
    return True, f"skipped the pause at step {index}"


def _promote_full(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if (refusal := _no_canary(work)) is not None:
        return False, refusal
    work.status.promote_full = True
    work.status.paused = False
    return True, "going to 100% and promoting, skipping the remaining steps and the bake"


def _abort(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if (refusal := _no_canary(work)) is not None:
        return False, refusal
    revision = work.status.canary_revision
    canary.abort(work, "aborted by hand")
    return True, f"aborted {revision}; it will not be retried until retry or a new predictor"


def _pause(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if (refusal := _no_canary(work)) is not None:
        return False, refusal
    work.status.paused = True
    work.status.phase = Phase.PAUSED
    return True, "paused; analysis goes on and can still roll back"


def _resume(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if (refusal := _no_canary(work)) is not None:
        return False, refusal
    status = work.status
    steps = work.spec.strategy.steps
    index = status.current_step or 0
    pause = steps[index].pause if index < len(steps) else None
    indefinite = pause is not None and pause.duration is None
    if not status.paused and not indefinite:
        return False, "the rollout is not paused"
    status.paused = False
    restart_hold_clocks(status)
    if indefinite:
        status.current_step = index + 1
        status.step_started_at = work.now
    return True, "resumed"


def _retry(work: Pass, _: ManualAction) -> tuple[bool, str]:
    if work.status.canary_revision is not None:
        return False, "a canary is in progress"
    if work.status.restoring is not None:
        return False, f"revision {work.status.restoring} is being restored; retry after that"
    if work.desired == work.status.stable_revision:
        return False, f"revision {work.desired} is already stable"
    failed = work.failed_before(work.desired)
    if failed is None:
        return False, f"revision {work.desired} has not failed; there is nothing to retry"
    canary.start(work, work.desired)
    return True, f"retrying {work.desired} (it ended {failed.outcome.value}: {failed.reason})"


def _rollback(work: Pass, action: ManualAction) -> tuple[bool, str]:
    target = action.revision
    if not target:
        return False, "rollback needs a revision: rollback REVISION"
    entry = work.entry(target)
    if entry is None:
        known = ", ".join(e.revision for e in work.status.history) or "none"
        return False, f"revision {target} is not in the history (known: {known})"
    if target == work.status.stable_revision and work.status.canary_revision is None:
        return False, f"revision {target} is already stable"
    if work.status.canary_revision is not None:
        canary.abort(work, f"aborted to roll back to {target}")
    if work.desired != target and work.entry(work.desired) is not None:
        work.record(work.desired, RevisionOutcome.ROLLED_BACK, f"rolled back by hand to {target}")
    work.status.restoring = target
    return True, f"restoring {target} to 100%"
