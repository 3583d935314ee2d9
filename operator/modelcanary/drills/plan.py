"""The rollback drill as a pure plan: ``plan_drill(...) -> DrillDecision``.

A drill rehearses the rollback path of one ModelDeployment, on purpose and on
a schedule, so that the day it is needed it is known to work and known to be
fast. Like the canary core, the plan is a pure function of the drill's spec
and status, the ModelDeployment, what the edges observed, and the time; its
state lives in ``RollbackDrill.status.step`` so an operator restart resumes
(or undoes) a drill where it stood.

Which revision is rehearsed: the one a rollback would restore if the current
stable revision went bad, that is the newest *other* promoted revision in the
history, or the last known-good revision when there is no other
(``drills.target``, with the reasons a drill may not start).

Modes, each a prefix of the next:

* ``verify``: the target's Deployment is created (or found running) and must
  become Ready at 0% traffic; time to ready is measured; a target that was not
  running before is scaled back to zero.
* ``warm``: then a small slice of traffic goes to it, and the ModelDeployment's
  own analysis judges it against stable; the weights are then put back
  exactly as they were found.
* ``live``: all traffic flips to the target and back; the time until the
  router confirms the flip is the time to restore.

Safety: a drill never starts while a canary (or a restore, or another drill)
is in progress, and from the moment it moves traffic, every way out (success,
failure, timeout, an interrupted operator) passes through *restoring* the
weights recorded before the drill began.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.analysis.verdicts import Outcome, evaluate
from modelcanary.api.base import parse_duration
from modelcanary.api.judging import (
    AnalysisStatus,
)
from modelcanary.api.modeldeployment import (
    DrillMode,
    DrillSummary,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelcanary.api.rollbackdrill import (
    DrillPhase,
    DrillRevisions,
    RollbackDrillSpec,
    RollbackDrillStatus,
)
from modelcanary.drills.ending import FINISHED, summary_of
from modelcanary.drills.target import drill_target, refusal
from modelcanary.rollout.analysis import seconds_until_next_look, with_stable_baseline
from modelcanary.rollout.decision import Action, EnsureRevision, Event, ScaleRevision, SetWeights
from modelcanary.rollout.observations import RevisionObservation, RouterObservation

POLL_SECONDS = 1.0
READ_BACK_SECONDS = 0.2
"""After asking the router for new weights: the read-back is what the drill times."""


class Step(enum.StrEnum):
    """Where a running drill stands; persisted in ``status.step``."""

    STARTING = "Starting"
    WAITING_READY = "WaitingReady"
    SHIFTING = "Shifting"
    JUDGING = "Judging"
    RESTORING = "Restoring"
    TEARING_DOWN = "TearingDown"
    DONE = "Done"


@dataclass(frozen=True)
class DrillObservations:
    revisions: dict[str, RevisionObservation] = field(default_factory=dict)
    router: RouterObservation = field(default_factory=RouterObservation)
    analysis: AnalysisObservation | None = None
    other_drill_running: str | None = None
    """The name of another running drill of the same ModelDeployment."""


@dataclass(frozen=True)
class DrillDecision:
    status: RollbackDrillStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float = POLL_SECONDS
    summary: DrillSummary | None = None
    """For ModelDeployment.status.lastDrill, once the drill has ended."""


def judges_counts(spec: RollbackDrillSpec) -> bool:
    """Count metrics compare with stable, which a live drill leaves without traffic:
    only a warm drill, where both revisions serve, can judge them."""
    return spec.mode is DrillMode.WARM


def analysis_due(
    spec: RollbackDrillSpec,
    status: RollbackDrillStatus,
    md_spec: ModelDeploymentSpec,
    now: datetime,
) -> bool:
    """Whether the executor should run the analysis queries this pass (once per interval)."""
    if status.step != Step.JUDGING or md_spec.analysis is None:
        return False
    return seconds_until_next_look(status.judged_at, md_spec.analysis.interval, now) <= 0


@dataclass
class _Work:
    name: str
    spec: RollbackDrillSpec
    status: RollbackDrillStatus
    md_spec: ModelDeploymentSpec
    md_status: ModelDeploymentStatus
    observed: DrillObservations
    now: datetime
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    summary: DrillSummary | None = None

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    @property
    def target(self) -> str:
        revisions = self.status.revisions
        assert revisions is not None
        assert revisions.last_known_good is not None
        return revisions.last_known_good

    def elapsed(self) -> float:
        started = self.status.started_at or self.now
        return (self.now - started).total_seconds()

    def weights_now(self) -> dict[str, int]:
        weights = self.observed.router.weights or {}
        return {revision: weight for revision, weight in weights.items() if weight}

    def route(self, weights: dict[str, int], *, back: bool = False) -> bool:
        """Ask for ``weights`` unless the router reads them back; True once it does.

        While the router cannot be read, traffic never moves toward the target
        (the rollout holds its steps the same way), but the weights as found
        (``back``) are asked for anyway: one absolute request, safe to repeat,
        and it ends the exposure as soon as the router takes it. Either way
        the step waits until the router reads them back.
        """
        wanted = {revision: weight for revision, weight in weights.items() if weight}
        if self.observed.router.weights is None:
            if back:
                self.actions.append(SetWeights.of(wanted))
            return False
        if self.weights_now() == wanted:
            return True
        self.actions.append(SetWeights.of(wanted))
        return False


def plan_drill(
    name: str,
    spec: RollbackDrillSpec,
    *,
    status: RollbackDrillStatus,
    md_spec: ModelDeploymentSpec,
    md_status: ModelDeploymentStatus,
    observed: DrillObservations,
    now: datetime,
) -> DrillDecision:
    work = _Work(name, spec, status.deep_copy(), md_spec, md_status, observed, now)
    state = work.status
    if state.phase in FINISHED:
        return DrillDecision(state, requeue_after=3600.0)
    if state.phase is DrillPhase.PENDING:
        reason = refusal(
            md_spec,
            md_status,
            router=observed.router,
            other_drill_running=observed.other_drill_running,
        )
        if reason is not None:
            state.phase = DrillPhase.REFUSED
            state.reason = reason
            state.finished_at = now
            work.event("DrillRefused", reason, warning=True)
            return DrillDecision(state, events=tuple(work.events), requeue_after=3600.0)
        _begin(work)
    if observed.router.weights is None and state.step in (Step.SHIFTING, Step.RESTORING):
        state.verdict_note = f"waiting for the router: {observed.router.error or 'no route'}"
    _advance(work)
    return DrillDecision(
        work.status, tuple(work.actions), tuple(work.events), _requeue(work), work.summary
    )


def _requeue(work: _Work) -> float:
    state = work.status
    if any(isinstance(action, SetWeights) for action in work.actions):
        return READ_BACK_SECONDS
    analysis = work.md_spec.analysis
    if state.step != Step.JUDGING or analysis is None or state.judged_at is None:
        return POLL_SECONDS
    return max(POLL_SECONDS, seconds_until_next_look(state.judged_at, analysis.interval, work.now))


def _begin(work: _Work) -> None:
    state = work.status
    target = drill_target(work.md_status)
    assert target is not None
    seen = work.observed.revisions.get(target)
    state.phase = DrillPhase.RUNNING
    state.step = Step.STARTING.value
    state.started_at = work.now
    state.revisions = DrillRevisions(last_known_good=target, stable=work.md_status.stable_revision)
    state.weights_before = dict(work.weights_now())
    state.target_was_running = bool(seen and seen.exists and seen.desired_replicas > 0)
    work.event("DrillStarted", f"{work.spec.mode} drill of revision {target}")


def _advance(work: _Work) -> None:
    """Carry the drill forward as far as the world allows in this pass."""
    state = work.status
    timeout = parse_duration(work.spec.timeout).total_seconds()
    canary = work.md_status.canary_revision
    if canary is not None and state.step in (Step.STARTING, Step.WAITING_READY):
        # A canary that began in the instant before this drill was marked
        # Running; the drill has not moved traffic yet, so it gives way.
        _fail(work, f"a canary of {canary} started; the drill gives way to it")
    if (
        state.step not in (Step.RESTORING, Step.TEARING_DOWN, Step.DONE)
        and work.elapsed() > timeout
    ):
        _fail(work, _timeout_reason(work))
    for _ in range(len(Step)):
        before = state.step
        _one_step(work)
        if state.step == before:
            return


def _timeout_reason(work: _Work) -> str:
    state = work.status
    if state.step == Step.WAITING_READY:
        seen = work.observed.revisions.get(work.target)
        why = seen.problem if seen is not None and seen.problem else "its pods are not Ready"
        return f"revision {work.target} did not become Ready within {work.spec.timeout}: {why}"
    if state.step == Step.JUDGING and state.verdict_note:
        return f"analysis of {work.target} gave no verdict within {work.spec.timeout}: " + (
            state.verdict_note
        )
    return f"did not finish within {work.spec.timeout} (at step {state.step})"


def _one_step(work: _Work) -> None:  # noqa: PLR0912 - one branch per step
    state = work.status
    target = work.target
    step = Step(state.step)
    if step is Step.STARTING:
        entry = next((e for e in work.md_status.history if e.revision == target), None)
        if entry is None:
            _fail(work, f"revision {target} is not in the history: it cannot be restored")
            return
        seen = work.observed.revisions.get(target)
        running = seen is not None and seen.exists and seen.desired_replicas > 0
        # A running autoscaled revision keeps the count its HPA gave it.
        hpa_owned = running and entry.predictor.autoscaling is not None
        replicas = None if hpa_owned else entry.predictor.replicas
        work.actions.append(EnsureRevision(target, entry.predictor, "canary", replicas))
        state.step = Step.WAITING_READY.value
    elif step is Step.WAITING_READY:
        seen = work.observed.revisions.get(target)
        if seen is None or not seen.available:
            return
        state.time_to_ready_seconds = round(work.elapsed(), 3)
        if work.spec.mode is DrillMode.VERIFY:
            state.step = Step.TEARING_DOWN.value
        else:
            state.step = Step.SHIFTING.value
            state.shift_started_at = work.now
    elif step is Step.SHIFTING:
        if work.route(_drill_weights(work)):
            started = state.shift_started_at or work.now
            if work.spec.mode is DrillMode.LIVE:
                state.time_to_restore_seconds = round((work.now - started).total_seconds(), 3)
            state.step = Step.JUDGING.value
            state.judging_since = work.now
    elif step is Step.JUDGING:
        _judge(work)
    elif step is Step.RESTORING:
        state.restore_started_at = state.restore_started_at or work.now
        if work.route(dict(state.weights_before or {}), back=True):
            if state.shift_started_at is not None:
                state.time_to_switch_back_seconds = round(
                    (work.now - state.restore_started_at).total_seconds(), 3
                )
            state.step = Step.TEARING_DOWN.value
    elif step is Step.TEARING_DOWN:
        if not state.target_was_running:
            work.actions.append(ScaleRevision(target, 0))
        _finish(work)


def _drill_weights(work: _Work) -> dict[str, int]:
    target = work.target
    if work.spec.mode is DrillMode.LIVE:
        return {target: 100}
    slice_ = work.spec.warm_weight or (work.md_spec.drill.warm_weight if work.md_spec.drill else 5)
    weights = {rev: w for rev, w in (work.status.weights_before or {}).items()}
    stable = work.status.revisions.stable if work.status.revisions else None
    if stable is None or weights.get(stable, 0) < slice_:
        return {target: slice_, **{r: w for r, w in weights.items() if r != target}}
    weights[stable] -= slice_
    weights[target] = weights.get(target, 0) + slice_
    return weights


def _judge(work: _Work) -> None:
    analysis = work.md_spec.analysis
    state = work.status
    if analysis is None:
        state.verdict_note = "no analysis configured: the drill checked readiness and routing only"
        state.step = Step.RESTORING.value
        return
    observation = work.observed.analysis
    if observation is None:
        return
    # In a live drill stable serves nothing once the switch is read back, so
    # relative bounds compare with stable's value from an earlier evaluation.
    observation = with_stable_baseline(observation, AnalysisStatus(results=state.results))
    evaluation = evaluate(
        analysis, observation, state.judgements, count_metrics=judges_counts(work.spec)
    )
    state.judgements = list(evaluation.judgements)
    state.judged_at = observation.at
    if evaluation.results:
        state.results = list(evaluation.results)
    state.verdict_note = evaluation.reason or "all metrics pass"
    if evaluation.outcome is Outcome.PASS:
        started = state.shift_started_at or work.now
        state.time_to_healthy_seconds = round((work.now - started).total_seconds(), 3)
        state.step = Step.RESTORING.value
    elif evaluation.outcome is Outcome.FAIL:
        _fail(work, f"analysis failed on {work.target}: {evaluation.reason}")


def _fail(work: _Work, reason: str) -> None:
    """Fail, but only after the weights are back: failing goes through Restoring."""
    state = work.status
    if state.reason:
        return
    state.reason = reason
    work.event("DrillFailing", reason, warning=True)
    if state.step in (Step.SHIFTING, Step.JUDGING):
        state.step = Step.RESTORING.value
    elif state.step in (Step.STARTING, Step.WAITING_READY):
        state.step = Step.TEARING_DOWN.value


def _finish(work: _Work) -> None:
    state = work.status
    state.step = Step.DONE.value
    state.finished_at = work.now
    state.phase = DrillPhase.FAILED if state.reason else DrillPhase.SUCCEEDED
    work.summary = summary_of(work.name, work.spec, state)
    if state.phase is DrillPhase.SUCCEEDED:
        work.event("DrillSucceeded", f"{work.spec.mode} drill of {work.target} passed")
    else:
        work.event("DrillFailed", state.reason, warning=True)
