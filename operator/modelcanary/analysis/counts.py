"""From a count query's series to counters per slice, or a reason they cannot be used.

Count metrics hand the judge raw cumulative counters, not rates: the judge
subtracts what it saw at its previous look, per revision and slice, and so
gets the exact number of requests and events in between. ``increase()`` over
the canary's age would do the subtraction in Prometheus instead, but it
extrapolates to the window's edges, so its counts are not whole numbers and
can shrink from one look to the next; exact counts are what the test's
validity argument is about. A counter that goes down (a pod restarted, a pod
went away) is caught by the judge and that interval is skipped.

Everything a query can get wrong that waiting will not fix is an error here
with a message that says what to change: a rate instead of a counter, a lost
``le`` label, a missing ``+Inf`` bucket, a slice label the query dropped,
series that should have been summed.

Pure: standard library only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelcanary.analysis.failures import Failure
from modelcanary.api.analysis import Metric
from modelcanary.api.judging import MAX_DISTRIBUTION_BUCKETS as MAX_BUCKETS

LE = "le"
ERRORS_EVENT = "errors"
_WHOLE = 1e-6


@dataclass(frozen=True)
class Series:
    """One series of an instant query's answer."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Answer:
    """What one count query returned for one revision."""

    series: tuple[Series, ...] = ()
    error: str | None = None
    kind: Failure = Failure.OUTAGE
    """When ``error`` is set: whether waiting may end it (an outage) or not (an error)."""

    @classmethod
    def failed(cls, reason: str, kind: Failure = Failure.OUTAGE) -> Answer:
        return cls(error=reason, kind=kind)


class CountsError(ValueError):
    """The answer cannot be read as counters; the message says what to change."""


@dataclass(frozen=True)
class Histogram:
    """One slice's cumulative bucket counters: upper bound -> requests at or below it."""

    cumulative: Mapping[float, float]

    @property
    def total(self) -> float:
        return self.cumulative[math.inf]


def _count(series: Series, what: str) -> float:
    value = series.value
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise CountsError(f"{what} is {value}, not a count")
    if abs(value - round(value)) > _WHOLE:
        raise CountsError(
            f"{what} is {value:g}, not a whole number: the query must return raw counters "
            "(no rate(), increase() or avg)"
        )
    return float(round(value))


def _slice_of(series: Series, label: str | None) -> str:
    if label is None:
        return ""
    value = series.labels.get(label)
    if value is None:
        raise CountsError(f"a series has no {label} label: the query must group by {label}")
    return value


def _described(slice_value: str) -> str:
    return f" for slice {slice_value!r}" if slice_value else ""


def _grouping(label: str | None, *first: str) -> str:
    """The aggregation the query needs: sum by (le, segment), sum by (segment), sum."""
    labels = [*first, *([label] if label else [])]
    return f"sum by ({', '.join(labels)})" if labels else "sum"


def totals(answer: Answer, label: str | None, what: str) -> dict[str, float]:
    """One counter per slice (the ``failed`` or ``total`` query of an errors metric)."""
    found: dict[str, float] = {}
    for series in answer.series:
        slice_value = _slice_of(series, label)
        if slice_value in found:
            raise CountsError(
                f"the {what} query returned several series{_described(slice_value)}: "
                f"aggregate it with {_grouping(label)}(...)"
            )
        found[slice_value] = _count(series, f"the {what} count{_described(slice_value)}")
    return found


def histograms(answer: Answer, label: str | None) -> dict[str, Histogram]:
    """Cumulative bucket counters per slice, checked to be a histogram."""
    raw: dict[str, dict[float, float]] = {}
    for series in answer.series:
        slice_value = _slice_of(series, label)
        text = series.labels.get(LE)
        if text is None:
            raise CountsError(
                f"a series has no le label: the query must keep it, {_grouping(label, LE)}"
            )
        try:
            bound = float(text)
        except ValueError:
            raise CountsError(f"le={text!r} is not a number") from None
        buckets = raw.setdefault(slice_value, {})
        if bound in buckets:
            raise CountsError(
                f"several series for le={text}{_described(slice_value)}: "
                f"aggregate with {_grouping(label, LE)}"
            )
        buckets[bound] = _count(series, f"the le={text} bucket{_described(slice_value)}")
    result: dict[str, Histogram] = {}
    for slice_value, buckets in raw.items():
        if math.inf not in buckets:
            raise CountsError(f"the +Inf bucket is missing{_described(slice_value)}")
        ordered = sorted(buckets.items())
        for (low, below), (high, above) in itertools.pairwise(ordered):
            if above < below:
                raise CountsError(
                    f"bucket le={high:g} counts fewer than le={low:g}{_described(slice_value)}: "
                    "histogram buckets are cumulative"
                )
        result[slice_value] = Histogram(dict(ordered))
    return result


def error_counts(
    failed: Answer, total: Answer, label: str | None
) -> dict[str, tuple[float, float]]:
    """(failed, total) per slice. No failed series for a slice means none failed yet:
    a counter labelled with an error code only exists after the first such error."""
    failures = totals(failed, label, "failed")
    requests = totals(total, label, "total")
    unmatched = sorted(set(failures) - set(requests))
    if unmatched:
        raise CountsError(f"failed requests but no total{_described(unmatched[0])}")
    counts = {}
    for slice_value, count in requests.items():
        bad = failures.get(slice_value, 0.0)
        if bad > count:
            raise CountsError(
                f"more failed ({bad:g}) than total ({count:g}) requests{_described(slice_value)}"
            )
        counts[slice_value] = (bad, count)
    return counts


def exceedances(histogram: Histogram, bounds: Sequence[float]) -> dict[float, float]:
    """Requests slower than each bound (above it)."""
    return {bound: histogram.total - histogram.cumulative[bound] for bound in bounds}


def bucket_counts(histogram: Histogram, bounds: Sequence[float]) -> dict[float, float]:
    """Requests in each bucket ``(previous bound, bound]``, for sorted ``bounds`` ending
    at +Inf; the first bucket starts at -Inf."""
    counts, below = {}, 0.0
    for bound in bounds:
        counts[bound] = histogram.cumulative[bound] - below
        below = histogram.cumulative[bound]
    return counts


# --------------------------------------------------------------------------- per metric

Counters = tuple[float, dict[str, float]]
"""A slice's counters at one look: its total requests, and each event's count by name."""


def counters_of(metric: Metric, answers: Mapping[str, Answer]) -> dict[str, Counters]:
    """Per slice: total requests and each event's count, by event name."""
    label = metric.slice.label if metric.slice is not None else None
    if metric.errors is not None:
        pairs = error_counts(answers["failed"], answers["total"], label)
        return {s: (total, {ERRORS_EVENT: failed}) for s, (failed, total) in pairs.items()}
    found = histograms(answers["buckets"], label)
    if metric.distribution is not None:
        too_many = next((s for s, h in found.items() if len(h.cumulative) > MAX_BUCKETS), None)
        if too_many is not None:
            raise CountsError(
                f"{len(found[too_many].cumulative)} buckets; a distribution metric takes at "
                f"most {MAX_BUCKETS}: use a histogram with fewer buckets"
            )
    return {s: (h.total, _events(metric, h)) for s, h in found.items()}


def _events(metric: Metric, histogram: Histogram) -> dict[str, float]:
    """Every event this histogram can answer; the judge keeps the ones it tracks."""
    bounds = sorted(histogram.cumulative)
    if metric.latency is not None:
        return {latency_event(b): c for b, c in exceedances(histogram, bounds[:-1]).items()}
    return {bucket_event(b): c for b, c in bucket_counts(histogram, bounds).items()}


def latency_event(bound: float) -> str:
    return f"> {bound!r}"


def bucket_event(upper: float) -> str:
    return f"le {upper!r}" if math.isfinite(upper) else "le +Inf"


ALL = ""
"""The slice of a sliced metric that pools every slice: a label value is never empty."""


def with_all(counters: dict[str, Counters]) -> dict[str, Counters]:
    """The slices and, pooled, all of them: a fault everywhere is caught on all the
    traffic, not only slice by slice."""
    if not counters:
        return counters
    events: dict[str, float] = {}
    for _, counts in counters.values():
        for name, count in counts.items():
            events[name] = events.get(name, 0.0) + count
    total = math.fsum(total for total, _ in counters.values())
    return {**counters, ALL: (total, events)}
