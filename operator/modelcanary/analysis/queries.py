"""The query plan of one evaluation, keyed by what each query is for.

An evaluation asks Prometheus for threshold values (candidate, and stable for
relative bounds), for count metrics' counters (both revisions, one query per
part: failed and total, or buckets) and for the minSamples guard. The plan
names every request by ``(metric, role, part)``; the edge runs them, in any
order and batched with other ModelDeployments' requests, and hands back
answers under the same keys. Nothing is paired back by position, so adding a
kind of query adds keys, not index arithmetic.

Pure: the edge does the I/O, this module says what to ask and what the
answers mean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from modelcanary.analysis.counts import Answer
from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import AnalysisObservation, CountArms, MetricObservation, Sample
from modelcanary.api.analysis import (
    Analysis,
    Metric,
)
from modelcanary.promql.templates import TemplateValues

Role = Literal["candidate", "stable"]
MIN_SAMPLES: Final = "minSamples"
"""The guard's key; metric names are lower-case DNS labels, so it cannot clash."""
_SHOWN_SERIES = 3


@dataclass(frozen=True)
class QueryKey:
    metric: str
    """A metric's name, or :data:`MIN_SAMPLES`."""
    role: Role
    part: str
    """query (threshold), failed, total, buckets (count metrics) or samples."""


Plan = dict[QueryKey, tuple[str, TemplateValues]]


def _relative(metric: Metric) -> bool:
    return metric.min_relative_to_stable is not None or metric.max_relative_to_stable is not None


def plan(
    analysis: Analysis,
    candidate: TemplateValues,
    stable: TemplateValues | None,
    *,
    count_metrics: bool = True,
) -> Plan:
    """Every query this evaluation needs. Without ``count_metrics`` they are left out."""
    queries: Plan = {}
    for metric in analysis.metrics:
        if metric.is_count and not count_metrics:
            continue
        for part, template in metric.queries().items():
            queries[QueryKey(metric.name, "candidate", part)] = (template, candidate)
            if stable is not None and (metric.is_count or _relative(metric)):
                queries[QueryKey(metric.name, "stable", part)] = (template, stable)
    if analysis.min_samples is not None:
        queries[QueryKey(MIN_SAMPLES, "candidate", "samples")] = (
            analysis.min_samples.query,
            candidate,
        )
    return queries


def sample_of(answer: Answer) -> Sample:
    """One series is a value; none is no data; several is an error, since a bound can
    only be held against one number."""
    if answer.error is not None:
        return Sample.failed(answer.error, answer.kind)
    if not answer.series:
        return Sample.of(None)
    if len(answer.series) == 1:
        return Sample.of(answer.series[0].value)
    shown = ", ".join(format_labels(s.labels) for s in answer.series[:_SHOWN_SERIES])
    more = len(answer.series) - _SHOWN_SERIES
    if more > 0:
        shown += f" and {more} more"
    return Sample.failed(
        f"the query must return one series but returned {len(answer.series)}: {shown}; "
        "aggregate it, e.g. with sum(...)",
        Failure.ERROR,
    )


def format_labels(labels: Mapping[str, str]) -> str:
    """A label set as PromQL prints it: ``{code="500", revision="a1b2"}``."""
    # JSON's string quoting matches PromQL's closely enough for a message.
    inner = ", ".join(
        f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in sorted(labels.items())
    )
    return "{" + inner + "}"


def observation(
    analysis: Analysis,
    at: datetime,
    answers: Mapping[QueryKey, Answer],
    *,
    with_stable: bool,
) -> AnalysisObservation:
    """What the answers say, per metric; a key with no answer reads as "not run"."""
    missing = Answer.failed("not run", Failure.ERROR)  # a planning bug: waiting won't fix it

    def answer(metric: str, role: Role, part: str) -> Answer:
        return answers.get(QueryKey(metric, role, part), missing)

    metrics: list[MetricObservation] = []
    counts: dict[str, CountArms] = {}
    for metric in analysis.metrics:
        if metric.is_count:
            parts = list(metric.queries())
            if QueryKey(metric.name, "candidate", parts[0]) not in answers:
                continue  # not planned (a live drill leaves count metrics out)
            counts[metric.name] = CountArms(
                candidate={part: answer(metric.name, "candidate", part) for part in parts},
                stable=(
                    {part: answer(metric.name, "stable", part) for part in parts}
                    if with_stable
                    else None
                ),
            )
            continue
        stable_key = QueryKey(metric.name, "stable", "query")
        metrics.append(
            MetricObservation(
                metric.name,
                sample_of(answer(metric.name, "candidate", "query")),
                sample_of(answers[stable_key]) if stable_key in answers else None,
            )
        )
    samples = None
    if analysis.min_samples is not None:
        samples = sample_of(answer(MIN_SAMPLES, "candidate", "samples"))
    return AnalysisObservation(
        at=at, prometheus_online=True, metrics=tuple(metrics), samples=samples, counts=counts
    )


def failed_observation(analysis: Analysis, at: datetime, reason: str) -> AnalysisObservation:
    """Every query failed before it could run (e.g. a Secret for a header is missing).

    An outage, not an error: a Secret that is created late (by an external-secrets
    controller, say) ends it without anyone touching the ModelDeployment."""
    failed = Answer.failed(reason)
    answers: dict[QueryKey, Answer] = {}
    for metric in analysis.metrics:
        for part in metric.queries():
            answers[QueryKey(metric.name, "candidate", part)] = failed
            answers[QueryKey(metric.name, "stable", part)] = failed
    answers[QueryKey(MIN_SAMPLES, "candidate", "samples")] = failed
    return observation(analysis, at, answers, with_stable=True)
