"""The peer judges, each over a small grid of its settings, on one canary's scrapes.

Every peer reads the same simulated counters as the operator's sequential
judge. Each returns, per setting of its grid, when it would have rolled the
canary back (seconds after the candidate's first request; NaN for never
within the canary). Their semantics, as read from each project's source:

threshold: the operator's threshold metrics as the e2e world configures them
    (``e2e/dataplane/scenario.py``): every ``interval`` (2 s), over a
    ``window`` (10 s): error ratio <= 0.05; p99 <= 1.0 s and <= 2x stable's
    p99; mean score within 0.7-1.4x stable's; ``minSamples`` 50 candidate
    requests in the window, or the evaluation is NoData (held, never failed);
    an empty or NaN value is NoData. Each Fail evaluation counts; the canary
    rolls back when the count exceeds ``failureLimit`` (0).

flagger: Flagger's builtin checks on the candidate alone, every analysis
    ``interval`` (default 1m, at least 10 s): request-success-rate >= 99% and
    request-duration p99 <= 500 ms over the metric ``interval`` window (1m).
    A query without values (empty or NaN) also fails the check
    (``ErrNoValuesFound`` halts advancement and counts a failed check). Failed
    checks accumulate; at the iteration after they reach ``threshold`` (5 in
    the documented examples; 1 when unset) Flagger rolls back. Flagger's
    nginx template measures mean duration; the Istio and Linkerd ones take
    the p99 used here.

argo: an Argo Rollouts AnalysisTemplate with the e2e world's absolute
    bounds, measured at the start and every ``interval``: ``result[0] <=
    0.05`` for the error ratio and ``result[0] <= 1.0`` for the p99. An empty
    vector makes ``result[0]`` an evaluation error (an Error measurement); a
    NaN fails the condition (a Failed measurement) unless the condition is
    guarded with ``isNaN(result[0]) ||``. A metric fails the run when its
    failed measurements exceed ``failureLimit`` (default 0) or its consecutive
    errors exceed ``consecutiveErrorLimit`` (default 4). Argo has no default
    interval or window; the defaults row uses the e2e world's 2 s and 10 s.
    Argo's templates query one revision, so no bound relative to stable.

kayenta: Kayenta's NetflixACAJudge classifies each metric with a
    Mann-Whitney test between candidate and stable (confLevel 0.98: High
    when the 98% interval of the shift lies above zero) and fails the canary
    when the score falls below the marginal threshold; with three equally
    weighted metrics and the usual marginal 75, one High (or Low, for a
    two-sided metric) fails it. Here the samples are requests reconstructed
    from each step's counter differences: failed or not, latency bucket,
    score bucket (ties are whole buckets; the tie-corrected normal
    approximation of the U statistic, continuity corrected). Errors and
    latency are harmful upwards, scores either way. By default the judgement
    is made once per step, at its end (a fixed 60 s horizon), for the two
    steps where stable still serves. Kayenta's extra effect-size rule (the
    interval must clear 25% of the Hodges-Lehmann estimate) is left out; it
    only ever turns a High into a Pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bench.judge_sim.promql import Queries, queries
from bench.judge_sim.world import CANDIDATE, STABLE, Bools, Counters, Floats, Ints, Schedule

_SETTLE = 0.02
"""Evaluations run this long after the whole second, like a look that is barely late."""

WINDOWS = (10, 30, 60, 120)


@dataclass(frozen=True)
class Peer:
    name: str
    title: str
    parameters: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]
    default: tuple[float, ...]

    def index(self, setting: tuple[float, ...]) -> int:
        return self.grid.index(setting)

    def describe(self, setting: tuple[float, ...]) -> str:
        parts = []
        for name, value in zip(self.parameters, setting, strict=True):
            if name in {"interval", "window", "every"}:
                parts.append(f"{name} {value:g}s")
            elif name == "nan guard":
                parts.append("isNaN guard" if value else "no isNaN guard")
            elif name == "level":
                parts.append(f"p < {value:g}")
            else:
                parts.append(f"{name} {value:g}")
        return ", ".join(parts)


def _grid(*axes: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(itertools.product(*axes))


THRESHOLD = Peer(
    "threshold",
    "operator thresholds (e2e bounds)",
    ("interval", "window", "failureLimit"),
    _grid((2, 5, 10, 30), (10, 30, 60), (0, 1, 2, 4, 8)),
    (2, 10, 0),
)
FLAGGER = Peer(
    "flagger",
    "Flagger",
    ("interval", "window", "threshold"),
    _grid((10, 15, 30, 60), WINDOWS, (1, 2, 3, 5, 8)),
    (60, 60, 5),
)
ARGO = Peer(
    "argo",
    "Argo Rollouts",
    ("interval", "window", "failureLimit", "nan guard"),
    _grid((1, 2, 5, 10, 30), (10, 30, 60), (0, 1, 2, 4, 8), (0, 1)),
    (2, 10, 0, 0),
)
KAYENTA = Peer(
    "kayenta",
    "Kayenta-like Mann-Whitney",
    ("every", "level"),
    _grid((5, 10, 20, 30, 60), (0.02, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8)),
    (60, 0.02),
)
PEERS = (THRESHOLD, FLAGGER, ARGO, KAYENTA)


def evaluate(counters: Counters, schedule: Schedule) -> dict[str, Floats]:
    """Per peer, the rollback time at each setting of its grid (NaN: never)."""
    times: Floats = np.arange(0, int(schedule.end) + 1, dtype=np.float64) + _SETTLE
    by_window = {
        window: (
            queries(counters, CANDIDATE, times, window),
            queries(counters, STABLE, times, window),
        )
        for window in WINDOWS
    }
    origin = counters.first_candidate_request
    return {
        THRESHOLD.name: _threshold(by_window, times, origin),
        FLAGGER.name: _flagger(by_window, times, origin, schedule.end),
        ARGO.name: _argo(by_window, times, origin),
        KAYENTA.name: _kayenta(counters, schedule, times, origin),
    }


def _at(times: Floats, interval: float, start: float) -> Ints:
    """Indexes into the one-second evaluation grid for every ``interval`` from ``start``."""
    step = round(interval)
    first = round(start)
    picked: Ints = np.arange(first, times.size, step, dtype=np.int64)
    return picked


def _first_after(flags: Bools, times: Floats) -> float:
    hits = np.flatnonzero(flags)
    return float(times[hits[0]]) if hits.size else math.nan


# --------------------------------------------------------------------------- threshold


def _threshold_failures(candidate: Queries, stable: Queries) -> Bools:
    """Evaluations whose outcome is Fail (not starved, some metric out of bounds)."""
    starved = candidate.increase < 50
    c_err, c_p99, c_score = candidate.error_ratio, candidate.p99, candidate.mean_score
    s_p99, s_score = stable.p99, stable.mean_score
    with np.errstate(invalid="ignore"):
        error_fail = c_err.present & (c_err.value > 0.05)
        p99_known = c_p99.present & ~np.isnan(c_p99.value)
        stable_p99_known = s_p99.present & ~np.isnan(s_p99.value) & (s_p99.value > 0)
        p99_fail = p99_known & (
            (c_p99.value > 1.0) | (stable_p99_known & (c_p99.value > 2.0 * s_p99.value))
        )
        score_known = c_score.present & ~np.isnan(c_score.value)
        stable_score_known = s_score.present & ~np.isnan(s_score.value) & (s_score.value > 0)
        ratio = c_score.value / np.where(stable_score_known, s_score.value, 1.0)
        score_fail = score_known & stable_score_known & ((ratio > 1.4) | (ratio < 0.7))
    result: Bools = ~starved & (error_fail | p99_fail | score_fail)
    return result


def _threshold(
    by_window: dict[int, tuple[Queries, Queries]], times: Floats, origin: float
) -> Floats:
    fails = {w: _threshold_failures(*by_window[w]) for w in (10, 30, 60)}
    out = np.full(len(THRESHOLD.grid), math.nan)
    for i, (interval, window, limit) in enumerate(THRESHOLD.grid):
        picked = _at(times, interval, 0)
        failures = np.cumsum(fails[int(window)][picked])
        out[i] = _first_after(failures > limit, times[picked]) - origin
    return out


# --------------------------------------------------------------------------- flagger


def _flagger(
    by_window: dict[int, tuple[Queries, Queries]], times: Floats, origin: float, end: float
) -> Floats:
    failed: dict[int, Bools] = {}
    for span, (candidate, _) in by_window.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            success_rate = 100.0 * candidate.successes.value / candidate.requests.value
            no_rate = ~candidate.requests.present | np.isnan(success_rate)
            p99_ms = 1000.0 * candidate.p99.value
            no_p99 = ~candidate.p99.present | np.isnan(p99_ms)
            failed[span] = no_rate | (success_rate < 99.0) | no_p99 | (p99_ms > 500.0)
    out = np.full(len(FLAGGER.grid), math.nan)
    for i, (interval, window, threshold) in enumerate(FLAGGER.grid):
        picked = _at(times, interval, interval)
        counts = np.cumsum(failed[int(window)][picked])
        reached = _first_after(counts >= threshold, times[picked])
        rollback = reached + interval
        out[i] = rollback - origin if rollback <= end + _SETTLE else math.nan
    return out


# --------------------------------------------------------------------------- argo


def _argo_metric(
    value: Floats,
    present: Bools,
    bound: float,
    limit: float,
    guarded: bool,
) -> int | None:
    """The measurement at which one metric fails its run, or None."""
    failed = 0
    consecutive_errors = 0
    for index, (v, here) in enumerate(zip(value.tolist(), present.tolist(), strict=True)):
        if not here:
            consecutive_errors += 1
            if consecutive_errors > 4:
                return index
            continue
        consecutive_errors = 0
        ok = guarded if math.isnan(v) else v <= bound
        if not ok:
            failed += 1
            if failed > limit:
                return index
    return None


def _argo(by_window: dict[int, tuple[Queries, Queries]], times: Floats, origin: float) -> Floats:
    out = np.full(len(ARGO.grid), math.nan)
    for i, (interval, window, limit, guard) in enumerate(ARGO.grid):
        candidate, _ = by_window[int(window)]
        picked = _at(times, interval, 0)
        ends = [
            _argo_metric(q.value[picked], q.present[picked], bound, limit, bool(guard))
            for q, bound in ((candidate.error_ratio, 0.05), (candidate.p99, 1.0))
        ]
        hits = [e for e in ends if e is not None]
        if hits:
            out[i] = times[picked][min(hits)] - origin
    return out


# --------------------------------------------------------------------------- kayenta


def mann_whitney_z(candidate: Floats, stable: Floats) -> Floats:
    """The Mann-Whitney z of the candidate ranking higher, from [test, category] counts.

    Categories are ordered by value; every request of one category ties with
    the others there. Midranks give the U statistic; the variance has the
    usual tie correction, and the continuity correction pulls z half a unit of
    U toward zero. No requests on either side, or one category only: z = 0.
    """
    n1 = candidate.sum(axis=1)
    n2 = stable.sum(axis=1)
    n = n1 + n2
    ties = candidate + stable
    before = np.cumsum(ties, axis=1) - ties
    midrank = before + (ties + 1) / 2
    rank_sum = (candidate * midrank).sum(axis=1)
    u = rank_sum - n1 * (n1 + 1) / 2
    mean = n1 * n2 / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        tie_term = (ties**3 - ties).sum(axis=1) / (n * (n - 1))
        variance = n1 * n2 / 12 * ((n + 1) - tie_term)
        shift = u - mean
        corrected = np.sign(shift) * np.maximum(np.abs(shift) - 0.5, 0.0)
        z = corrected / np.sqrt(variance)
    result: Floats = np.where((n1 > 0) & (n2 > 0) & (variance > 0), z, 0.0)
    return result


def normal_upper_quantile(p: float) -> float:
    """z with P(Z > z) = p, by bisection on erfc (standard library only)."""
    low, high = 0.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(middle / math.sqrt(2)) > p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _step_counts(
    counters: Counters, times: Floats, starts: Floats
) -> Iterator[tuple[Floats, Floats]]:
    """Per metric, [time, category] request counts of each revision since the step start."""
    now = counters.scrape_at(times)
    then = counters.scrape_at(starts)

    def since(array: Ints, revision: int) -> Floats:
        values = array[revision]
        moved: Floats = (values[..., now[:, revision]] - values[..., then[:, revision]]).astype(
            float
        )
        return np.moveaxis(moved, -1, 0)

    def per_revision(array: Ints) -> tuple[Floats, Floats]:
        return since(array, CANDIDATE), since(array, STABLE)

    errors = np.stack(
        (counters.success.sum(axis=1), counters.failed.sum(axis=1)), axis=1
    )  # [revision, ok/failed, j]
    yield per_revision(errors)
    yield per_revision(counters.latency.sum(axis=1))
    yield per_revision(counters.score)


def _kayenta(counters: Counters, schedule: Schedule, times: Floats, origin: float) -> Floats:
    steps = [(start, weight) for start, weight in schedule.steps if weight < 1.0]
    ends = [start for start, _ in schedule.steps[1:]] + [schedule.end]
    step_of = np.full(times.size, -1)
    starts = np.zeros(times.size)
    for k, (start, _) in enumerate(steps):
        inside = (times > start + _SETTLE) & (times <= ends[k] + _SETTLE)
        step_of[inside] = k
        starts[inside] = start
    z_errors, z_latency, z_scores = (
        mann_whitney_z(candidate, stable)
        for candidate, stable in _step_counts(counters, times, starts)
    )
    since_start = np.round(times - _SETTLE - starts).astype(np.int64)
    out = np.full(len(KAYENTA.grid), math.nan)
    for i, (every, level) in enumerate(KAYENTA.grid):
        cut = normal_upper_quantile(level / 2)
        judged = (step_of >= 0) & (since_start > 0) & (since_start % round(every) == 0)
        high = (z_errors > cut) | (z_latency > cut) | (np.abs(z_scores) > cut)
        out[i] = _first_after(judged & high, times) - origin
    return out
