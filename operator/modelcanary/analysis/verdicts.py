"""Judging one evaluation: a verdict per metric, then one outcome for all of them.

A threshold metric's candidate value is held against the absolute bounds
(``min``/``max``) and, where set, against the stable revision's value from the
same query (``minRelativeToStable``/``maxRelativeToStable``). A count metric
goes to the sequential judge (``analysis.judge``) with its share of ``alpha``
and its running evidence. Each metric ends up ``Pass``, ``Fail``, ``NoData``
(empty, NaN, +-Inf, too few samples), ``Error`` (Prometheus rejected the query,
or its answer is not what the metric needs: waiting will not fix it) or
``Outage`` (the query could not run: waiting may fix it).

The evaluation's outcome then follows a fixed precedence, chosen so that the
monitoring system's own trouble can never decide a model's fate:

1. Prometheus offline -> ``Outage`` (hold; never a failure);
2. a count metric's ``Fail`` -> ``Fail``, *definitive*: it is a decision at
   level alpha from data that was read, so neither another metric's error nor
   too little traffic (the test is valid at any sample size) nor
   ``failureLimit`` holds it back;
3. any ``Error`` -> ``Error`` (held under the ``queryError`` policy; never a
   failure, never a pass). It outranks an outage because it is the one that
   will not go away by itself, so it is the one a person must hear about;
4. any ``Outage`` -> ``Outage`` (held under the ``outage`` policy);
5. any other ``Fail`` -> ``Fail``;
6. any ``NoData`` -> the ``noData`` policy: ``hold`` -> ``NoData``,
   ``fail`` -> ``Fail``, ``pass`` -> ``Pass`` (the NoData verdicts stay visible);
7. otherwise ``Pass``.

No metric configured and no minSamples guard is a ``Pass`` with nothing to
show; the rollout records that it had no evidence.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelcanary.analysis import judge
from modelcanary.analysis.failures import Failure
from modelcanary.analysis.formatting import number
from modelcanary.analysis.samples import AnalysisObservation, MetricObservation, Sample
from modelcanary.api.analysis import (
    Analysis,
    Metric,
)
from modelcanary.api.holds import NoDataPolicy
from modelcanary.api.judging import (
    CountJudgement,
    MetricResult,
    Verdict,
)

__all__ = ["Evaluation", "Outcome", "evaluate", "judge_metric", "number"]


class Outcome(enum.StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    NO_DATA = "NoData"
    ERROR = "Error"
    OUTAGE = "Outage"


@dataclass(frozen=True)
class Evaluation:
    outcome: Outcome
    results: tuple[MetricResult, ...]
    reason: str
    """For Fail, NoData, Error and Outage: which metric, value and bound, or what
    Prometheus said; empty for Pass."""
    judgements: tuple[CountJudgement, ...] = field(default=())
    """The sequential judge's evidence after this look, per count metric."""
    definitive: bool = False
    """A count metric failed: roll back now, whatever failureLimit says."""


def _absolute(metric: Metric, value: float) -> str | None:
    """The broken absolute bound, described; None when both hold."""
    if metric.max is not None and value > metric.max:
        return f"{number(value)} > max {number(metric.max)}"
    if metric.min is not None and value < metric.min:
        return f"{number(value)} < min {number(metric.min)}"
    return None


def _relative(metric: Metric, value: float, stable: float) -> str | None:
    low, high = metric.min_relative_to_stable, metric.max_relative_to_stable
    if high is not None and value > high * stable:
        return f"{number(value)} > {number(high)} x stable {number(stable)}"
    if low is not None and value < low * stable:
        return f"{number(value)} < {number(low)} x stable {number(stable)}"
    return None


def _has_relative_bound(metric: Metric) -> bool:
    return metric.min_relative_to_stable is not None or metric.max_relative_to_stable is not None


def _has_absolute_bound(metric: Metric) -> bool:
    return metric.min is not None or metric.max is not None


def judge_metric(metric: Metric, observed: MetricObservation) -> MetricResult:
    """One metric's verdict from its candidate sample and, if needed, the stable one."""
    candidate, stable = observed.candidate, observed.stable
    stable_value = stable.value if stable is not None else None

    def result(verdict: Verdict, message: str) -> MetricResult:
        return MetricResult(
            metric=metric.name,
            candidate=candidate.value,
            stable=stable_value,
            verdict=verdict,
            message=message,
        )

    if candidate.is_error:
        return result(_failed(candidate), f"candidate query failed: {candidate.error}")
    if candidate.value is None:
        return result(Verdict.NO_DATA, "no data for the candidate (empty, NaN or Inf)")
    broken = _absolute(metric, candidate.value)
    if broken:
        return result(Verdict.FAIL, broken)
    if not _has_relative_bound(metric):
        return result(Verdict.PASS, "within bounds")
    if stable is None:
        # The plan asks for stable wherever a relative bound needs it: a bug, not a wait.
        return result(Verdict.ERROR, "stable query failed: not queried")
    if stable.is_error:
        return result(_failed(stable), f"stable query failed: {stable.error}")
    if stable.value is None:
        return result(Verdict.NO_DATA, "no data for the stable revision")
    if stable.value == 0:
        # A ratio to zero means nothing; the absolute bounds, if any, decided.
        if _has_absolute_bound(metric):
            return result(Verdict.PASS, "within bounds (stable is 0: relative bound skipped)")
        return result(Verdict.NO_DATA, "stable is 0: a relative bound cannot judge")
    broken = _relative(metric, candidate.value, stable.value)
    if broken:
        return result(Verdict.FAIL, broken)
    return result(Verdict.PASS, "within bounds")


def _failed(sample: Sample) -> Verdict:
    """A failed query's verdict: Error if waiting will not fix it, else Outage."""
    return Verdict.ERROR if sample.kind is Failure.ERROR else Verdict.OUTAGE


def _too_few_samples(analysis: Analysis, samples: Sample | None) -> MetricResult | None:
    guard = analysis.min_samples
    if guard is None:
        return None
    if samples is None or samples.is_error:
        reason = samples.error if samples is not None else "not queried"
        return MetricResult(
            metric="minSamples",
            verdict=_failed(samples) if samples is not None else Verdict.ERROR,
            message=f"sample count query failed: {reason}",
        )
    if samples.value is None or samples.value < guard.value:
        seen = number(samples.value) if samples.value is not None else "no data"
        return MetricResult(
            metric="minSamples",
            candidate=samples.value,
            verdict=Verdict.NO_DATA,
            message=f"too little traffic: {seen} < {guard.value} samples",
        )
    return None


def evaluate(
    analysis: Analysis,
    observation: AnalysisObservation,
    judgements: Sequence[CountJudgement] = (),
    *,
    count_metrics: bool = True,
    boundary: bool = False,
) -> Evaluation:
    """The outcome of one evaluation under the spec's noData policy.

    ``judgements`` is the judge's evidence from earlier looks at this candidate.
    Without ``count_metrics`` (a live drill, where stable serves nothing to
    compare with) count metrics are left out and their evidence kept as it was.
    ``boundary`` says the weight changed since the last look: every count metric
    closes its interval here, so no interval spans two weights.
    """
    if not observation.prometheus_online:
        return Evaluation(Outcome.OUTAGE, (), "Prometheus is unreachable", tuple(judgements))
    by_name = {m.name: m for m in observation.metrics}
    before = {j.metric: j for j in judgements}
    counted = analysis.count_metrics if count_metrics else []
    share = analysis.alpha / len(counted) if counted else analysis.alpha
    results: list[MetricResult] = []
    after: list[CountJudgement] = []
    guard = _too_few_samples(analysis, observation.samples)
    if guard is not None:
        results.append(guard)
    starved = guard is not None and guard.verdict is Verdict.NO_DATA
    for metric in analysis.metrics:
        if metric.is_count:
            if not count_metrics:
                if metric.name in before:
                    after.append(before[metric.name])
                continue
            row, state = _judge_counts(
                metric, share, before.get(metric.name), observation, boundary=boundary
            )
            if state is not None:
                after.append(state)
            if starved and row.verdict is Verdict.PASS:
                # Not failing on little traffic is no evidence to promote on.
                row = row.model_copy(update={"verdict": Verdict.NO_DATA})
                row.message = f"{guard.message}; {row.message}" if guard else row.message
            results.append(row)
            continue
        observed = by_name.get(metric.name)
        if observed is None:
            results.append(
                MetricResult(metric=metric.name, verdict=Verdict.ERROR, message="not queried")
            )
        elif starved:
            # Values from too little traffic are shown but prove nothing.
            judged = judge_metric(metric, observed)
            assert guard is not None
            results.append(
                judged.model_copy(update={"verdict": Verdict.NO_DATA, "message": guard.message})
            )
        else:
            results.append(judge_metric(metric, observed))
    # Evidence of metrics no longer in the spec is dropped with them.
    evaluation = _outcome(analysis.no_data, tuple(results))
    definitive = next(
        (r for r in results if r.verdict is Verdict.FAIL and r.e_value is not None), None
    )
    if definitive is not None:
        reason = f"{definitive.metric}: {definitive.message}"
        return Evaluation(Outcome.FAIL, tuple(results), reason, tuple(after), definitive=True)
    return Evaluation(evaluation.outcome, evaluation.results, evaluation.reason, tuple(after))


def _judge_counts(
    metric: Metric,
    alpha: float,
    previous: CountJudgement | None,
    observation: AnalysisObservation,
    *,
    boundary: bool,
) -> tuple[MetricResult, CountJudgement | None]:
    arms = observation.counts.get(metric.name)
    if arms is None:
        row = MetricResult(metric=metric.name, verdict=Verdict.ERROR, message="not queried")
        return row, previous
    if arms.stable is None:
        message = "no stable revision to compare with"
        return MetricResult(metric=metric.name, verdict=Verdict.NO_DATA, message=message), previous
    judged = judge.judge(
        metric,
        alpha,
        previous,
        judge.Arms(arms.candidate, arms.stable),
        at=observation.at,
        close=boundary,
    )
    return judged.result, judged.state


def _first(results: tuple[MetricResult, ...], verdict: Verdict) -> MetricResult | None:
    return next((r for r in results if r.verdict is verdict), None)


def _outcome(policy: NoDataPolicy, results: tuple[MetricResult, ...]) -> Evaluation:
    error = _first(results, Verdict.ERROR)
    if error is not None:
        return Evaluation(Outcome.ERROR, results, f"{error.metric}: {error.message}")
    outage = _first(results, Verdict.OUTAGE)
    if outage is not None:
        return Evaluation(Outcome.OUTAGE, results, f"{outage.metric}: {outage.message}")
    failed = _first(results, Verdict.FAIL)
    if failed is not None:
        return Evaluation(Outcome.FAIL, results, f"{failed.metric}: {failed.message}")
    no_data = _first(results, Verdict.NO_DATA)
    if no_data is not None:
        reason = f"{no_data.metric}: {no_data.message}"
        if policy is NoDataPolicy.FAIL:
            return Evaluation(Outcome.FAIL, results, f"{reason} (noData: fail)")
        if policy is NoDataPolicy.HOLD:
            return Evaluation(Outcome.NO_DATA, results, reason)
    return Evaluation(Outcome.PASS, results, "")
