"""What one PromQL query returned, reduced to what judging needs.

A metric provider turns every outcome of a query into a :class:`Sample`: a
finite number, *no data* (an empty result, NaN or +-Inf), or a *failure* of
one of two kinds (:mod:`modelcanary.analysis.failures`): an outage (timed out,
Prometheus unreachable or 5xx), which waiting may fix, or an error (a query
Prometheus rejected, an answer that is not one number), which it will not.
Keeping them apart is the point: no data is a question of traffic and follows
the noData policy, an outage is a question of the monitoring system and holds
under the outage policy, an error is a question of the query and follows the
queryError policy. None may ever be mistaken for a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from modelcanary.analysis.counts import Answer
from modelcanary.analysis.failures import Failure


@dataclass(frozen=True)
class Sample:
    value: float | None = None
    """A finite number, or None when there was no data or an error."""

    error: str | None = None
    """Why the query failed; None when it ran."""

    kind: Failure = Failure.OUTAGE
    """When ``error`` is set: an outage (waiting may fix it) or an error (it will not)."""

    @classmethod
    def of(cls, value: float | None) -> Sample:
        """A query result: NaN, +-Inf and missing values are all *no data*."""
        if value is None or math.isnan(value) or math.isinf(value):
            return cls(value=None)
        return cls(value=float(value))

    @classmethod
    def failed(cls, reason: str, kind: Failure = Failure.OUTAGE) -> Sample:
        return cls(value=None, error=reason, kind=kind)

    @property
    def has_value(self) -> bool:
        return self.value is not None

    @property
    def is_error(self) -> bool:
        """The query failed, of either kind."""
        return self.error is not None


@dataclass(frozen=True)
class MetricObservation:
    """One metric's query, run for the candidate and (for relative bounds) for stable."""

    name: str
    candidate: Sample
    stable: Sample | None = None


@dataclass(frozen=True)
class CountArms:
    """One count metric's answers for the candidate and stable, by query part
    (failed and total, or buckets). ``stable`` is None when there is no stable revision."""

    candidate: Mapping[str, Answer]
    stable: Mapping[str, Answer] | None


@dataclass(frozen=True)
class AnalysisObservation:
    """One evaluation's raw results, taken at ``at``."""

    at: datetime
    prometheus_online: bool
    metrics: tuple[MetricObservation, ...] = ()
    samples: Sample | None = None
    """The minSamples query for the candidate, when one is configured."""
    counts: Mapping[str, CountArms] = field(default_factory=dict)
    """Count metrics' answers, by metric name."""
