"""Background analysis during the steps and the bake: applying an evaluation.

The handler runs the queries when :func:`analysis_due` says so and passes the
samples in; here the evaluation is judged (``modelcanary.analysis.verdicts``)
and folded into the status: failures counted against ``failureLimit``, no data
and outages turned into a *hold* that stops every step from advancing, and an
outage that outlasts ``outage.holdFor`` handed to ``outage.then``.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from datetime import datetime

from modelcanary.analysis.samples import AnalysisObservation, Sample
from modelcanary.analysis.verdicts import Evaluation, Outcome, evaluate
from modelcanary.api.analysis import (
    Analysis,
    OutageAction,
)
from modelcanary.api.base import parse_duration
from modelcanary.api.judging import (
    AnalysisStatus,
)
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
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
    return seconds_until_next_look(last, analysis.interval, now)


def seconds_until_next_look(last: datetime | None, interval: str, now: datetime) -> float:
    """Once per ``interval`` since the ``last`` look (at once if there was none).

    The one clock of every analysis, a canary's and a rollback drill's.
    """
    if last is None:
        return 0.0
    return max(0.0, (last + parse_duration(interval) - now).total_seconds())


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
    if state.outcome == Outcome.OUTAGE.value and state.outage_since is not None:
        return _outage(work, analysis, state)
    if state.outcome == Outcome.NO_DATA.value:
        return Gate.HOLD, f"analysis on hold, no data: {state.reason}"
    return Gate.GO, ""


def _look(work: Pass, analysis: Analysis, state: AnalysisStatus) -> str | None:
    """Record this pass's look, if any; the reason to end the candidate, if it failed."""
    observation = work.observed.analysis
    if observation is None:
        return None
    if work.status.canary_weight <= 0:
        evaluation = _move_baseline(analysis, state, observation)
        if evaluation.definitive:
            # The route sends it requests already; only the read-back is pending.
            state.results, state.outcome = list(evaluation.results), evaluation.outcome.value
            state.reason, state.failures = evaluation.reason, state.failures + 1
            return evaluation.reason
        return None
    evaluation = _fold(analysis, state, observation, work.status.canary_weight)
    if evaluation.definitive:
        return evaluation.reason
    if evaluation.outcome is Outcome.FAIL and state.failures > analysis.failure_limit:
        return evaluation.reason
    if evaluation.outcome is Outcome.FAIL:
        tolerated = f"{state.failures} of {analysis.failure_limit} failures tolerated"
        work.event("AnalysisFailed", f"{evaluation.reason} ({tolerated})", warning=True)
    return None


def _outage(work: Pass, analysis: Analysis, state: AnalysisStatus) -> tuple[Gate, str]:
    """Hold through an outage; after outage.holdFor, do what outage.then says."""
    assert state.outage_since is not None
    held = work.now - state.outage_since
    limit = parse_duration(analysis.outage.hold_for)
    reason = f"analysis on hold for {int(held.total_seconds())}s: {state.reason}"
    if held >= limit:
        if analysis.outage.then is OutageAction.ROLLBACK:
            return (
                Gate.FAIL,
                f"Prometheus unavailable for {analysis.outage.hold_for}: {state.reason}",
            )
        if analysis.outage.then is OutageAction.PAUSE and not work.status.paused:
            work.status.paused = True
            work.event("Paused", f"{reason}; paused until resumed", warning=True)
    else:
        work.requeue((limit - held).total_seconds())
    return Gate.HOLD, reason


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
    outage, no_data = evaluation.outcome is Outcome.OUTAGE, evaluation.outcome is Outcome.NO_DATA
    state.outage_since = (state.outage_since or observation.at) if outage else None
    state.no_data_since = (state.no_data_since or observation.at) if no_data else None
    return evaluation


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
