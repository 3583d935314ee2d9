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
from modelcanary.analysis.verdicts import Outcome, evaluate
from modelcanary.api.base import parse_duration
from modelcanary.api.modeldeployment import (
    AnalysisStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    OutageAction,
)
from modelcanary.rollout.state import Pass


class Gate(enum.Enum):
    """What the analysis allows this pass."""

    GO = "go"
    HOLD = "hold"
    FAIL = "fail"


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> bool:
    """Whether the handler should run the queries this pass.

    Only a candidate that takes traffic can be judged: before its first weight
    there is nothing to measure, and afterwards once per interval is enough.
    """
    if spec.analysis is None or status.canary_revision is None or status.canary_weight <= 0:
        return False
    last = status.analysis.last_run_at if status.analysis else None
    return last is None or now - last >= parse_duration(spec.analysis.interval)


def seconds_until_due(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime
) -> float | None:
    if spec.analysis is None or status.canary_revision is None or status.canary_weight <= 0:
        return None
    last = status.analysis.last_run_at if status.analysis else None
    if last is None:
        return 0.0
    return max(0.0, (last + parse_duration(spec.analysis.interval) - now).total_seconds())


def apply_evaluation(work: Pass) -> tuple[Gate, str]:
    """Fold this pass's evaluation (if any) into the status; say whether steps may advance."""
    analysis = work.spec.analysis
    if analysis is None:
        return Gate.GO, ""
    state = work.status.analysis or AnalysisStatus()
    work.status.analysis = state
    observation = work.observed.analysis
    if observation is not None and work.status.canary_weight > 0:
        observation = with_stable_baseline(observation, state)
        evaluation = evaluate(analysis, observation)
        state.last_run_at = observation.at
        state.evaluations += 1
        state.results = list(evaluation.results)
        state.outcome = evaluation.outcome.value
        state.reason = evaluation.reason
        if evaluation.outcome is Outcome.FAIL:
            state.failures += 1
        state.outage_since = (
            (state.outage_since or observation.at) if evaluation.outcome is Outcome.OUTAGE else None
        )
        state.no_data_since = (
            (state.no_data_since or observation.at)
            if evaluation.outcome is Outcome.NO_DATA
            else None
        )
        if evaluation.outcome is Outcome.FAIL and state.failures > analysis.failure_limit:
            return Gate.FAIL, evaluation.reason
        if evaluation.outcome is Outcome.FAIL:
            tolerated = f"{state.failures} of {analysis.failure_limit} failures tolerated"
            work.event("AnalysisFailed", f"{evaluation.reason} ({tolerated})", warning=True)
    if state.outcome == Outcome.OUTAGE.value and state.outage_since is not None:
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
    if state.outcome == Outcome.NO_DATA.value:
        return Gate.HOLD, f"analysis on hold, no data: {state.reason}"
    return Gate.GO, ""


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
