"""The few PromQL computations the threshold judges run, on the simulated scrapes.

Only what the peers' queries need, vectorised over evaluation times:

* ``rate(x[w])`` of one series uses that series' samples inside ``(t-w, t]``:
  the difference between its last and first sample there (the per-second
  factor cancels in every ratio the queries take). A series that appeared
  inside the window starts at its first sample, so its first increment is not
  seen, as in Prometheus; one with fewer than two samples is absent. ``sum``
  over series is absent when every series is;
* ``increase(x[w])`` extrapolates that difference to the whole window
  (Prometheus extrapolates to the window's edges when the samples come
  within an interval of them, which they do at a one-second scrape);
* ``histogram_quantile`` finds the bucket holding the rank and interpolates
  linearly inside it, from 0 for the first bucket, and answers the highest
  finite bound when the rank falls in +Inf; no requests is NaN.

An absent answer (an empty vector) and a NaN answer (0/0) are kept apart:
the peers treat them differently (Argo Rollouts: empty is an Error, NaN
fails the condition; Flagger: both are a failed check; the operator's
threshold judge: both are NoData).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.judge_sim.world import LATENCY_BOUNDS, Bools, Counters, Floats, Ints


@dataclass(frozen=True)
class Value:
    """One query's answer at each evaluation time."""

    value: Floats
    """NaN where the answer is NaN (or absent)."""
    present: Bools
    """False where the answer is an empty vector."""


def _appearance(cumulative: Ints) -> Ints:
    """[series]: the first scrape at which each series (leading axes) has counted anything."""
    seen = cumulative > 0
    first = np.argmax(seen, axis=-1)
    never = ~seen.any(axis=-1)
    result: Ints = np.where(never, cumulative.shape[-1], first)
    return result


def windowed(
    cumulative: Ints | Floats, appear: Ints, first: Ints, last: Ints
) -> tuple[Floats, Bools, Floats]:
    """Summed per-window differences of several series that share inner axes.

    ``cumulative`` is [series, inner..., scrape]; ``appear`` is [series];
    ``first``/``last`` are [time] scrape numbers (first inside the window, last
    at or before the evaluation). Returns [time, inner...] sums, [time] presence
    and [time] sampled span (scrapes between the first and last sample used).
    """
    scrapes = cumulative.shape[-1]
    times = first.shape[0]
    inner = cumulative.shape[1:-1]
    total = np.zeros((times, *inner))
    present = np.zeros(times, dtype=bool)
    span = np.zeros(times)
    end = np.clip(last, 0, scrapes - 1)
    for series in range(cumulative.shape[0]):
        start = np.maximum(first, appear[series])
        ok = end > start
        begin = np.clip(start, 0, scrapes - 1)
        values = cumulative[series]
        delta = np.moveaxis(values[..., end] - values[..., begin], -1, 0)
        total += np.where(ok.reshape((times,) + (1,) * len(inner)), delta, 0)
        present |= ok
        span = np.maximum(span, np.where(ok, end - start, 0))
    return total, present, span


@dataclass(frozen=True)
class Queries:
    """One revision's query answers at each evaluation time, for one window."""

    requests: Value
    """sum(rate(model_requests_total[w])): the request count in the window."""
    successes: Value
    """sum(rate(model_requests_total{code!~"5.."}[w]))"""
    error_ratio: Value
    """(sum(rate(failed[w])) or vector(0)) / sum(rate(total[w]))"""
    p99: Value
    """histogram_quantile(0.99, sum by (le) (rate(bucket[w]))) in seconds"""
    mean_score: Value
    """sum(rate(score_sum[w])) / sum(rate(score_count[w]))"""
    increase: Floats
    """sum(increase(model_requests_total[w])), 0 when absent (the minSamples query)."""


def queries(counters: Counters, revision: int, times: Floats, window: float) -> Queries:
    """Every query the threshold peers run, for one revision over ``window`` seconds."""
    phase = counters.phase[revision]
    last = np.floor(times - phase).astype(np.int64) - counters.first_scrape
    first = np.floor(times - window - phase).astype(np.int64) - counters.first_scrape + 1

    success = counters.success[revision]
    failed = counters.failed[revision]
    ok_sum, ok_present, ok_span = windowed(success, _appearance(success), first, last)
    bad_sum, bad_present, bad_span = windowed(failed, _appearance(failed), first, last)
    requests_present = ok_present | bad_present
    requests = ok_sum + bad_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        error_ratio = np.where(requests_present, bad_sum / requests, np.nan)
    span = np.maximum(ok_span, bad_span)
    with np.errstate(invalid="ignore", divide="ignore"):
        increase = np.where(span > 0, requests * window / np.maximum(span, 1), 0.0)

    segments_seen = _appearance(counters.requests[revision])
    buckets, buckets_present, _ = windowed(counters.latency[revision], segments_seen, first, last)
    p99 = histogram_quantile(0.99, buckets, np.asarray((*LATENCY_BOUNDS, np.inf)))

    scores = counters.score[revision]
    score_count = scores.sum(axis=0)[None, :]
    score_seen = _appearance(score_count)
    count, count_present, _ = windowed(score_count, score_seen, first, last)
    total_score, _, _ = windowed(counters.score_sum[revision][None, :], score_seen, first, last)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count_present, total_score / count, np.nan)
    return Queries(
        requests=Value(requests, requests_present),
        successes=Value(ok_sum, requests_present),
        error_ratio=Value(error_ratio, requests_present),
        p99=Value(p99, buckets_present),
        mean_score=Value(mean_score, count_present),
        increase=increase,
    )


def histogram_quantile(q: float, buckets: Floats, bounds: Floats) -> Floats:
    """Prometheus's histogram_quantile over [time, bucket] per-bucket counts."""
    cumulative = np.cumsum(buckets, axis=1)
    total = cumulative[:, -1]
    rank = q * total
    index = np.argmax(cumulative >= rank[:, None], axis=1)
    rows = np.arange(buckets.shape[0])
    upper = bounds[index]
    lower = np.where(index > 0, bounds[np.maximum(index - 1, 0)], 0.0)
    below = np.where(index > 0, cumulative[rows, np.maximum(index - 1, 0)], 0.0)
    inside = buckets[rows, index]
    with np.errstate(invalid="ignore", divide="ignore"):
        interpolated = lower + (upper - lower) * (rank - below) / inside
    highest_finite = bounds[-2]
    value = np.where(np.isinf(upper), highest_finite, interpolated)
    result: Floats = np.where(total > 0, value, np.nan)
    return result
