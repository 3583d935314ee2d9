"""Background analysis during the steps and the bake: applying an evaluation.

The handler runs the queries when :func:`analysis_due` says so and passes the
samples in; here the evaluation is judged (``modelcanary.analysis.verdicts``)
and folded into the status: failures counted against ``failureLimit``; no data,
query errors and outages turned into a *hold* that stops every step from
advancing. Each hold has its own clock in the status (``noDataSince``,
``errorSince``, ``outageSince``) and its own policy for when it lasts: an
outage that outlasts ``outage.holdFor`` is handed to ``outage.then``, a query
error to ``queryError.then`` (by default at once: pause), no data to
``noDataLimit.then`` if one is set. The clocks are separate because what ends
each is different: traffic, a person fixing the query, Prometheus coming back.
A person who resumes restarts them (:func:`restart_hold_clocks`): resuming says
"I have seen it, give it another holdFor", not "ignore it".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from modelcanary.analysis.samples import AnalysisObservation, Sample
from modelcanary.analysis.verdicts import Evaluation, Outcome, evaluate
from modelcanary.api.analysis import Analysis
from modelcanary.api.base import parse_duration
from modelcanary.api.holds import HoldAction, NoDataLimit, Outage, QueryError
from modelcanary.api.judging import (
    AnalysisStatus,
)
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelcanary.rollout import visibility
from modelcanary.rollout.state import Pass


class Gate(enum.Enum):
    """What the analysis allows this pass."""

    GO = "go"
    HOLD = "hold"
    FAIL = "fail"


def seconds_until_due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
) -> float | None:
    """Seconds until the next look at Prometheus; None while no look is needed.

    A candidate that takes traffic is looked at once per interval, and at once
    when its weight changed, so that no interval the sequential judge compares
    spans two weights. Count metrics are also looked at while the weight is
    still 0: those looks only move the judge's starting counters forward, so
    that its first interval starts right before the first request reaches the
    candidate instead of whenever the weight was first confirmed.
    """
    analysis = spec.analysis
    if analysis is None or status.canary_revision is None:
        return None
    weight = status.canary_weight
    if weight <= 0 and not analysis.count_metrics:
        return None
    state = status.analysis
    last = state.last_run_at if state else None
    if state is None or last is None:
        return 0.0
    if weight > 0 and state.weight != weight:
        return 0.0
    if weight > 0 and leaning_against_candidate(state):
        return seconds_until_next_look(last, analysis.interval, now, hurried=True)
    return seconds_until_next_look(last, analysis.interval, now)


HURRIED_LOOKS_PER_INTERVAL = 4
"""How much more often a candidate is looked at while its evidence leans against it."""


def leaning_against_candidate(state: AnalysisStatus) -> bool:
    """Whether a count metric's evidence that the candidate is worse is above 1.

    An e-value of 1 is where the evidence started; above it the data so far favour
    "worse". Looking sooner then is what a fast rollback needs: with a look per
    interval, a fault that reaches Prometheus just after a look waits a whole
    interval, and the time to roll back is bimodal by that interval (bench-rollback
    measured 2.2 s or 3.4 s). The sequential test is anytime-valid, so a looking
    schedule that depends on the data so far keeps its false-rollback rate; a
    healthy candidate only pays some extra queries while its evidence is above 1.
    """
    return any(result.e_value is not None and result.e_value > 1 for result in state.results)


def seconds_until_next_look(
    last: datetime | None, interval: str, now: datetime, *, hurried: bool = False
) -> float:
    """Seconds until :func:`next_look_at` (at once if there was no ``last`` look).

    The one clock of every analysis, a canary's and a rollback drill's.
    """
    if last is None:
        return 0.0
    return max(0.0, (next_look_at(last, interval, hurried=hurried) - now).total_seconds())


def next_look_at(last: datetime, interval: str, *, hurried: bool = False) -> datetime:
    """The look after one taken at ``last``: the instant of the look period's grid in
    ``(last, last + period]``; the period is ``interval``, or a
    :data:`HURRIED_LOOKS_PER_INTERVAL`-th of it when ``hurried``.

    The grid is the period's multiples since the Unix epoch, the same for every
    canary, so that canaries with the same period look at the same instants and
    their queries can be answered together (issue 15: counted from each canary's
    own last look, 100 canaries sent ~389 queries per interval, one per look).
    A look is never later than a period after the last one, as it was before the
    grid; only the first interval after a look off the grid (the first look, one
    at a new weight, a late one) is shorter. The judge takes intervals of any
    length: each is a block it conditions on, and latency gathers looks until
    its blocks span ``MIN_INTERVAL``. The hurried grid holds the plain one (for
    any interval of whole 4 µs), so a canary that stops hurrying is back on the
    shared instants at once.
    """
    period = _microseconds(parse_duration(interval)) // (
        HURRIED_LOOKS_PER_INTERVAL if hurried else 1
    )
    if period <= 0:
        return last
    epoch = _EPOCH if last.tzinfo is not None else _EPOCH.replace(tzinfo=None)
    since_epoch = _microseconds(last - epoch)
    return epoch + timedelta(microseconds=(since_epoch // period + 1) * period)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(span: timedelta) -> int:
    """A span in whole microseconds: the grid is computed exactly, in integers."""
    return span // timedelta(microseconds=1)


def look_instant(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
) -> datetime | None:
    """The grid instant a due look at ``now`` evaluates its queries at: the latest one
    at or before ``now``; None for a look not on the grid (the first, one at a weight
    change: evaluated at ``now``) or one not due yet.

    Every canary that looks for one instant asks Prometheus the same question,
    however late its pass runs, so one answer serves them all (issue 15). The
    latest instant, not the one that was due: a pass more than a period late
    catches up in one look instead of one look per missed instant.
    """
    late = look_lateness(spec, status, now)
    analysis = spec.analysis
    state = status.analysis
    if late is None or late < 0 or analysis is None or state is None:
        return None
    hurried = status.canary_weight > 0 and leaning_against_candidate(state)
    return latest_grid_instant(now, analysis.interval, hurried=hurried)


def latest_grid_instant(now: datetime, interval: str, *, hurried: bool = False) -> datetime:
    """The instant of the look grid (:func:`next_look_at`) at or before ``now``."""
    period = _microseconds(parse_duration(interval)) // (
        HURRIED_LOOKS_PER_INTERVAL if hurried else 1
    )
    if period <= 0:
        return now
    epoch = _EPOCH if now.tzinfo is not None else _EPOCH.replace(tzinfo=None)
    return epoch + timedelta(microseconds=_microseconds(now - epoch) // period * period)


def look_lateness(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
) -> float | None:
    """Seconds by which a look at ``now`` comes after the grid instant it was due at,
    on the clock of :func:`seconds_until_due`; None for a look not on that clock (the
    first, and one at a weight change, are due at once, at a moment no status records).

    Negative while the look is not due yet. This is the analysis tick lag: the
    time a canary's pass waited past its look (a slot, the event loop, a sleep).
    """
    analysis = spec.analysis
    state = status.analysis
    if analysis is None or status.canary_revision is None or state is None:
        return None
    weight = status.canary_weight
    last = state.last_run_at
    if last is None or (weight <= 0 and not analysis.count_metrics):
        return None
    if weight > 0 and state.weight != weight:
        return None
    hurried = weight > 0 and leaning_against_candidate(state)
    return (now - next_look_at(last, analysis.interval, hurried=hurried)).total_seconds()


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether the handler should run the queries this pass."""
    due = seconds_until_due(spec, status, now)
    return due is not None and due <= 0


def apply_evaluation(work: Pass) -> tuple[Gate, str]:
    """Fold this pass's evaluation (if any) into the status; say whether steps may advance."""
    analysis = work.spec.analysis
    if analysis is None:
        return Gate.GO, ""
    state = work.status.analysis or AnalysisStatus()
    work.status.analysis = state
    failed = _look(work, analysis, state)
    if failed is not None:
        return Gate.FAIL, failed
    hold = _hold_of(analysis, state, work.now)
    if hold is None:
        return Gate.GO, ""
    return _hold(work, hold)


def _look(work: Pass, analysis: Analysis, state: AnalysisStatus) -> str | None:
    """Record this pass's look, if any; the reason to end the candidate, if it failed."""
    observation = work.observed.analysis
    if observation is None:
        return None
    visibility.note_look(state, observation)
    if work.status.canary_weight <= 0:
        evaluation = _move_baseline(analysis, state, observation)
        if evaluation.definitive:
            # The route sends it requests already; only the read-back is pending.
            state.results, state.outcome = list(evaluation.results), evaluation.outcome.value
            state.reason, state.failures = evaluation.reason, state.failures + 1
            return evaluation.reason
        return None
    evaluation = _fold(analysis, state, observation, work.status.canary_weight)
    if evaluation.outcome is Outcome.ERROR and state.error_since == observation.at:
        # Once, when it starts: the condition carries it for as long as it lasts.
        work.event("AnalysisError", evaluation.reason, warning=True)
    if evaluation.definitive:
        return evaluation.reason
    if evaluation.outcome is Outcome.FAIL and state.failures > analysis.failure_limit:
        return evaluation.reason
    if evaluation.outcome is Outcome.FAIL:
        tolerated = f"{state.failures} of {analysis.failure_limit} failures tolerated"
        work.event("AnalysisFailed", f"{evaluation.reason} ({tolerated})", warning=True)
    return None


@dataclass(frozen=True)
class _Hold:
    """The hold the latest evaluation put the steps in, as its policy sees it."""

    what: str
    """Names the hold in a rollback's reason: "no data", "query error"."""
    message: str
    """What the status says while it holds."""
    since: datetime | None
    """When the hold began; None when its clock was restarted by a resume."""
    policy: Outage | QueryError | NoDataLimit | None
    """holdFor and then; None for no data without a noDataLimit: it only holds."""
    detail: str
    """What the latest evaluation said, for the rollback's reason."""


def _hold_of(analysis: Analysis, state: AnalysisStatus, now: datetime) -> _Hold | None:
    """The hold the latest outcome calls for; None when the steps may go on."""
    reason = state.reason
    if state.outcome == Outcome.ERROR.value:
        message = f"analysis on hold, query error: {reason}"
        return _Hold("query error", message, state.error_since, analysis.query_error, reason)
    if state.outcome == Outcome.OUTAGE.value:
        since = state.outage_since
        held = int((now - since).total_seconds()) if since is not None else 0
        message = f"analysis on hold for {held}s: {reason}"
        return _Hold("Prometheus unavailable", message, since, analysis.outage, reason)
    if state.outcome == Outcome.NO_DATA.value:
        message = f"analysis on hold, no data: {reason}"
        return _Hold("no data", message, state.no_data_since, analysis.no_data_limit, reason)
    return None


def _hold(work: Pass, hold: _Hold) -> tuple[Gate, str]:
    """Hold the steps; once the hold has lasted its holdFor, do what its ``then`` says.

    A hold with no policy (no data without a noDataLimit) or no clock (restarted by
    a resume and not yet seen again by an evaluation) only holds.
    """
    if hold.policy is None or hold.since is None:
        return Gate.HOLD, hold.message
    held = work.now - hold.since
    limit = parse_duration(hold.policy.hold_for)
    if held < limit:
        work.requeue((limit - held).total_seconds())
        return Gate.HOLD, hold.message
    if hold.policy.then is HoldAction.ROLLBACK:
        lasted = f" for {hold.policy.hold_for}" if limit.total_seconds() > 0 else ""
        return Gate.FAIL, f"{hold.what}{lasted}: {hold.detail}"
    if hold.policy.then is HoldAction.PAUSE and not work.status.paused:
        work.status.paused = True
        work.event("Paused", f"{hold.message}; paused until resumed", warning=True)
    return Gate.HOLD, hold.message


def restart_hold_clocks(status: ModelDeploymentStatus) -> None:
    """A person resumed: every hold starts counting again from the next evaluation
    that still sees it, so the pause it caused is not re-applied in the same pass."""
    state = status.analysis
    if state is not None:
        state.no_data_since = state.error_since = state.outage_since = None


def _fold(
    analysis: Analysis, state: AnalysisStatus, observation: AnalysisObservation, weight: int
) -> Evaluation:
    """Judge one look at a candidate that takes traffic and record it in ``state``."""
    observation = with_stable_baseline(observation, state)
    boundary = state.weight is not None and state.weight != weight
    evaluation = evaluate(analysis, observation, state.judgements, boundary=boundary)
    state.judgements = list(evaluation.judgements)
    state.last_run_at = observation.at
    state.weight = weight
    state.evaluations += 1
    state.results = list(evaluation.results)
    state.outcome = evaluation.outcome.value
    state.reason = evaluation.reason
    if evaluation.outcome is Outcome.FAIL:
        state.failures += 1
    outcome = evaluation.outcome
    state.outage_since = _clock(state.outage_since, outcome is Outcome.OUTAGE, observation.at)
    state.error_since = _clock(state.error_since, outcome is Outcome.ERROR, observation.at)
    state.no_data_since = _clock(state.no_data_since, outcome is Outcome.NO_DATA, observation.at)
    return evaluation


def _clock(since: datetime | None, running: bool, at: datetime) -> datetime | None:
    """A hold's start: kept while the hold lasts, set when it begins, cleared when it ends."""
    return (since or at) if running else None


def _move_baseline(
    analysis: Analysis, state: AnalysisStatus, observation: AnalysisObservation
) -> Evaluation:
    """A look before the weight is confirmed: the judge's counters move on, and its
    evidence with them (a metric whose query failed keeps what it had), but nothing
    else counts as an evaluation: there may have been no traffic to judge."""
    evaluation = evaluate(analysis, observation, state.judgements)
    state.judgements = list(evaluation.judgements)
    state.last_run_at = observation.at
    state.weight = 0
    return evaluation


def with_stable_baseline(
    observation: AnalysisObservation, state: AnalysisStatus
) -> AnalysisObservation:
    """Judge relative bounds against stable's last value once stable takes no traffic.

    At 100% (and through the bake) the stable revision serves nothing, so its
    rates are empty. The candidate is then compared with the baseline stable
    showed in the last evaluation that had one, rather than holding forever.
    A stable *query error* is not replaced: that is an outage, not quiet.
    """
    baseline = {r.metric: r.stable for r in state.results if r.stable is not None}
    metrics = tuple(
        replace(m, stable=Sample.of(baseline[m.name]))
        if m.stable is not None
        and not m.stable.is_error
        and m.stable.value is None
        and m.name in baseline
        else m
        for m in observation.metrics
    )
    return replace(observation, metrics=metrics)


def passed_since(work: Pass, since: datetime | None) -> bool:
    """Whether an evaluation taken at or after ``since`` passed: the evidence to promote on."""
    state = work.status.analysis
    if work.spec.analysis is None:
        return True
    return (
        state is not None
        and state.outcome == Outcome.PASS.value
        and state.last_run_at is not None
        and (since is None or state.last_run_at >= since)
    )


def compared_with_stable(work: Pass) -> bool:
    """Whether the candidate may take all the traffic, as far as the count metrics go.

    They compare the candidate with stable on the same stretch of time; at 100% stable
    serves nothing, so through the bake they keep the verdict of their last comparison.
    A candidate sent to 100% before any comparison passed (quick steps, a busy
    Prometheus) would leave them nothing to go on, and the canary would hold there for
    good. So the last step waits for an evaluation that passed while stable still served.
    """
    analysis = work.spec.analysis
    if analysis is None or not analysis.count_metrics or work.status.stable_revision is None:
        return True
    state = work.status.analysis
    return state is not None and state.outcome == Outcome.PASS.value
