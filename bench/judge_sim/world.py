"""The synthetic world a simulated canary runs in: requests, pauses, counters, scrapes.

One canary is one seeded draw of everything below; every judge of the
comparison reads the *same* draw, so their differences are the judges' own.

Traffic
    Total load ``R`` rps is drawn per canary, log-uniform in [10, 1000], so
    the candidate gets 1-100 rps at its first weight (10%). The rate moves
    slowly (a sine of period 1-5 minutes, +-30%) and jumps now and then
    (spikes of x1.5-3 lasting 1-5 s). Arrivals are Poisson given the rate. The
    router sends each request to the candidate with the current weight:
    nothing before 0 s, then 10% for 60 s, 50% for 60 s and 100% for the 60 s
    bake. Stable has served alone for 20 s before the canary starts, so its
    counters are not zero at the first look.

Requests
    Each request belongs to a segment (us/eu/apac, 0.5/0.3/0.2), fails with a
    small probability (0.1%), takes a service time from a log-normal body
    (median 4 ms, like the e2e model server) with a 3% Pareto tail (from 8 ms,
    shape 1.8), slower in eu (x1.2) and apac (x1.5), and, when it succeeds,
    reports a score drawn from Beta(5, 3).

Pauses: what makes requests of one revision move together
    * machine-wide stalls (a noisy neighbour, the node's CPU throttled): one
      every 20 s on average, 0.1-0.5 s long, and *both* revisions stop;
    * per-process hiccups (a garbage collection, a page fault storm): each
      revision's process, independently, pauses twice a second on average for
      a log-normal 25 ms (about 10-70 ms). Everything the process has in
      flight or receives meanwhile waits: a handful of requests of one
      revision slow down together. This within-revision correlation is what
      the judge's per-block cap is there for; under the null both revisions
      have it equally.
    A paused request needs its full service time of *unpaused* time, so its
    latency is its service time plus every pause it overlapped.

Counters and scrapes
    A request is counted when it completes, as a Prometheus client library
    does. Each revision's counters (per segment: successes, failures, latency
    buckets, and, unsliced, score buckets and the score sum) are scraped once a
    second at that revision's own phase, drawn per canary, so the two
    revisions' counters at one look are from up to a second apart. A counter
    series exists from its first increment on (a failed-requests series only
    after the first failure), which is what an empty query answer means.

Looks
    The operator looks every ``interval`` seconds from 0 s (the first look is
    the judge's baseline), each look up to 50 ms late; a query at time ``t``
    sees each revision's latest scrape at or before ``t``.

Requires numpy, which is in the venv through the dev dependencies
(matplotlib) but not in the operator's image: the simulator is a bench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from e2e.modelserver.server import DURATION_BUCKETS

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

CANDIDATE, STABLE = 0, 1
REVISIONS = ("candidate", "stable")
SEGMENTS = ("us", "eu", "apac")
SEGMENT_WEIGHTS = (0.5, 0.3, 0.2)
SEGMENT_SLOWDOWN = (1.0, 1.2, 1.5)

# The e2e model server's request-duration buckets: the simulated histogram is the real one.
LATENCY_BOUNDS: tuple[float, ...] = DURATION_BUCKETS
SCORE_BOUNDS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(1, 11))
"""Score buckets 0.1 .. 1.0; a +Inf bucket follows, as in every Prometheus histogram."""


def le_text(bound: float) -> str:
    """A bucket bound as Prometheus writes it in the ``le`` label."""
    return "+Inf" if math.isinf(bound) else repr(bound)


@dataclass(frozen=True)
class Schedule:
    """The canary's steps: candidate weight by time, and when it ends."""

    steps: tuple[tuple[float, float], ...] = ((0.0, 0.1), (60.0, 0.5), (120.0, 1.0))
    """(start time in seconds, candidate weight) of each step; the last one is the bake."""
    end: float = 180.0
    history: float = 20.0
    """Seconds stable serves alone before the canary starts."""

    def weight(self, times: Floats) -> Floats:
        weights = np.zeros_like(times)
        for start, value in self.steps:
            weights[times >= start] = value
        return weights

    @property
    def compared_until(self) -> float:
        """The last moment both revisions take traffic (the start of the 100% step)."""
        return next((start for start, value in self.steps if value >= 1.0), self.end)


@dataclass(frozen=True)
class Scenario:
    """What differs between the candidate and stable, or in the machine, in one family."""

    name: str
    title: str
    harmful: bool
    """Whether rolling back is the right answer (False: the null and the shared stall)."""
    error_rate: tuple[float, float, float] | None = None
    """The candidate's error probability per segment (None: the same as stable's)."""
    latency_factor: float = 1.0
    """The candidate's service times are multiplied by this."""
    score_shift: float = 0.0
    """Added to the candidate's scores (clipped to [0, 1])."""
    severe_stalls: bool = False
    """Extra machine-wide stalls of 0.5-2 s, one every 8 s, for both revisions."""


@dataclass(frozen=True)
class Realism:
    """Switches for the world's sources of trouble (all on in the reported runs)."""

    stalls: bool = True
    hiccups: bool = True
    scrape_offsets: bool = True
    varying_load: bool = True
    hiccup_rate: float = 2.0
    """Per-process pauses per second."""
    hiccup_median: float = 0.025
    """Median pause in seconds (log-normal, sigma 0.5)."""


BASE_ERROR_RATE = 0.001
SCORE_BETA = (5.0, 3.0)
BODY_MEDIAN, BODY_SIGMA = 0.004, 0.35
TAIL_SHARE, TAIL_FROM, TAIL_SHAPE = 0.03, 0.008, 1.8
STALL_EVERY, STALL_SECONDS = 20.0, (0.1, 0.5)
SEVERE_EVERY, SEVERE_SECONDS = 8.0, (0.5, 2.0)
LOOK_LATENESS = 0.05
_BIN = 0.01


@dataclass
class Counters:
    """One canary's cumulative counters per revision at each of its scrapes.

    Axis ``j`` is the scrape number: revision ``r``'s scrape ``j`` happens at
    ``first_scrape + j + phase[r]`` and includes every request completed by then.
    """

    phase: Floats
    first_scrape: int
    success: Ints
    """[revision, segment, j]"""
    failed: Ints
    """[revision, segment, j]"""
    latency: Ints
    """[revision, segment, bucket, j], per bucket (not cumulative over le)."""
    score: Ints
    """[revision, bucket, j], successful requests only, per bucket."""
    score_sum: Floats
    """[revision, j]"""
    looks: Floats
    """The operator's look times."""
    rate: float
    """The canary's base total load in rps."""
    first_candidate_request: float
    scrape_index: Ints = field(init=False)
    """[look, revision]: the scrape each look sees."""

    def __post_init__(self) -> None:
        self.scrape_index = self.scrape_at(self.looks)

    def scrape_at(self, times: Floats) -> Ints:
        """[time, revision]: each revision's latest scrape at or before each time."""
        raw = np.floor(times[:, None] - self.phase[None, :]) - self.first_scrape
        last = self.success.shape[-1] - 1
        index: Ints = np.clip(raw, 0, last).astype(np.int64)
        return index

    @property
    def requests(self) -> Ints:
        """[revision, segment, j]"""
        return self.success + self.failed


def _poisson_times(rng: np.random.Generator, every: float, start: float, end: float) -> Floats:
    count = rng.poisson((end - start) / every)
    return np.sort(rng.uniform(start, end, count))


def _merge(starts: Floats, ends: Floats) -> tuple[Floats, Floats]:
    """Overlapping pauses merged into disjoint intervals, sorted."""
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts)
    starts, ends = starts[order], ends[order]
    merged_starts, merged_ends = [starts[0]], [ends[0]]
    for start, end in zip(starts[1:], ends[1:], strict=True):
        if start <= merged_ends[-1]:
            merged_ends[-1] = max(merged_ends[-1], end)
        else:
            merged_starts.append(start)
            merged_ends.append(end)
    return np.array(merged_starts), np.array(merged_ends)


def completions(arrivals: Floats, service: Floats, starts: Floats, ends: Floats) -> Floats:
    """When each request finishes: ``service`` seconds of unpaused time after arriving.

    With disjoint pauses ``[starts[i], ends[i])``, unpaused time up to ``t`` is
    ``u(t) = t - paused(t)``, flat during a pause. A request finishes when
    ``u`` has grown by its service time since it arrived, so the finish is
    ``u^-1(u(arrival) + service)``, taken at the end of the pause it falls in.
    """
    if starts.size == 0:
        return arrivals + service
    lengths = ends - starts
    before = np.concatenate(([0.0], np.cumsum(lengths)[:-1]))
    through = before + lengths
    index = np.searchsorted(starts, arrivals, side="right") - 1
    valid = index >= 0
    safe = np.where(valid, index, 0)
    paused = np.where(
        valid, before[safe] + np.clip(arrivals - starts[safe], 0.0, lengths[safe]), 0.0
    )
    target = arrivals - paused + service
    flat_at = starts - before
    after = np.searchsorted(flat_at, target, side="left") - 1
    shift = np.where(after >= 0, through[np.maximum(after, 0)], 0.0)
    result: Floats = target + shift
    return result


def _pauses(
    rng: np.random.Generator, scenario: Scenario, realism: Realism, start: float, end: float
) -> tuple[tuple[Floats, Floats], list[tuple[Floats, Floats]]]:
    """Machine-wide stalls, then each revision's own hiccups, as (starts, ends)."""
    stall_starts: list[Floats] = []
    stall_ends: list[Floats] = []
    regimes = [(STALL_EVERY, STALL_SECONDS)] if realism.stalls else []
    if scenario.severe_stalls:
        regimes.append((SEVERE_EVERY, SEVERE_SECONDS))
    for every, (low, high) in regimes:
        times = _poisson_times(rng, every, start, end)
        stall_starts.append(times)
        stall_ends.append(times + rng.uniform(low, high, times.size))
    stalls = (
        np.concatenate(stall_starts) if stall_starts else np.zeros(0),
        np.concatenate(stall_ends) if stall_ends else np.zeros(0),
    )
    hiccups = []
    for _ in REVISIONS:
        if realism.hiccups:
            times = _poisson_times(rng, 1.0 / realism.hiccup_rate, start, end)
            lengths = realism.hiccup_median * np.exp(0.5 * rng.standard_normal(times.size))
            hiccups.append((times, times + lengths))
        else:
            hiccups.append((np.zeros(0), np.zeros(0)))
    return stalls, hiccups


def _load(rng: np.random.Generator, realism: Realism, rate: float, times: Floats) -> Floats:
    if not realism.varying_load:
        return np.full_like(times, rate)
    period = rng.uniform(60.0, 300.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    load: Floats = rate * (1.0 + 0.3 * np.sin(2 * math.pi * times / period + phase))
    for spike in _poisson_times(rng, 45.0, float(times[0]), float(times[-1])):
        length, factor = rng.uniform(1.0, 5.0), rng.uniform(1.5, 3.0)
        load[(times >= spike) & (times < spike + length)] *= factor
    return load


def simulate(
    rng: np.random.Generator,
    scenario: Scenario,
    *,
    schedule: Schedule | None = None,
    realism: Realism | None = None,
    interval: float = 1.0,
    rate: float | None = None,
) -> Counters:
    """One canary: draw its requests and pauses, and count what Prometheus scrapes."""
    schedule = schedule or Schedule()
    realism = realism or Realism()
    start, end = -schedule.history, schedule.end + 1.0
    if rate is None:
        rate = float(10.0 ** rng.uniform(1.0, 3.0))

    bins = np.arange(start, end, _BIN)
    arrivals_per_bin = rng.poisson(_load(rng, realism, rate, bins) * _BIN)
    arrivals = np.repeat(bins, arrivals_per_bin) + rng.uniform(0, _BIN, arrivals_per_bin.sum())
    n = arrivals.size
    revision = np.where(rng.random(n) < schedule.weight(arrivals), CANDIDATE, STABLE)
    segment = np.searchsorted(np.cumsum(SEGMENT_WEIGHTS)[:-1], rng.random(n), side="right")

    error_p = np.full((2, len(SEGMENTS)), BASE_ERROR_RATE)
    if scenario.error_rate is not None:
        error_p[CANDIDATE] = scenario.error_rate
    failed = rng.random(n) < error_p[revision, segment]

    service = BODY_MEDIAN * np.exp(BODY_SIGMA * rng.standard_normal(n))
    tail = rng.random(n) < TAIL_SHARE
    pareto = TAIL_FROM * (1.0 - rng.random(n)) ** (-1.0 / TAIL_SHAPE)
    service = np.where(tail, np.minimum(pareto, 10.0), service)
    service *= np.asarray(SEGMENT_SLOWDOWN)[segment]
    service[revision == CANDIDATE] *= scenario.latency_factor

    stalls, hiccups = _pauses(rng, scenario, realism, start, end + 5.0)
    done = np.empty(n)
    for r in (CANDIDATE, STABLE):
        mine = revision == r
        starts, ends = _merge(
            np.concatenate((stalls[0], hiccups[r][0])), np.concatenate((stalls[1], hiccups[r][1]))
        )
        done[mine] = completions(arrivals[mine], service[mine], starts, ends)
    latency_bucket = np.searchsorted(np.asarray(LATENCY_BOUNDS), done - arrivals, side="left")

    score = rng.beta(*SCORE_BETA, n)
    score[revision == CANDIDATE] += scenario.score_shift
    score = np.clip(score, 0.0, 1.0)
    score_bucket = np.searchsorted(np.asarray(SCORE_BOUNDS), score, side="left")

    phase = rng.uniform(0.0, 1.0, 2) if realism.scrape_offsets else np.zeros(2)
    first_scrape = math.floor(start) - 1
    scrapes = math.ceil(end) + 2 - first_scrape
    scrape = np.ceil(done - phase[revision]).astype(np.int64) - first_scrape
    kept = scrape < scrapes
    counters = _count(
        revision[kept],
        segment[kept],
        failed[kept],
        latency_bucket[kept],
        score_bucket[kept],
        score[kept],
        scrape[kept],
        scrapes,
    )
    looks = np.arange(0.0, schedule.end + 1e-9, interval)
    looks = looks + rng.uniform(0.0, LOOK_LATENESS, looks.size)
    candidate_arrivals = arrivals[revision == CANDIDATE]
    first = float(candidate_arrivals.min()) if candidate_arrivals.size else math.inf
    return Counters(
        phase=phase,
        first_scrape=first_scrape,
        success=counters[0],
        failed=counters[1],
        latency=counters[2],
        score=counters[3],
        score_sum=counters[4],
        looks=looks,
        rate=rate,
        first_candidate_request=first,
    )


def _count(  # noqa: PLR0917 - one column per request attribute
    revision: Ints,
    segment: Ints,
    failed: Bools,
    latency_bucket: Ints,
    score_bucket: Ints,
    score: Floats,
    scrape: Ints,
    scrapes: int,
) -> tuple[Ints, Ints, Ints, Ints, Floats]:
    """Cumulative counters by scrape from one row per request."""
    segments, latency_buckets, score_buckets = (
        len(SEGMENTS),
        len(LATENCY_BOUNDS) + 1,
        len(SCORE_BOUNDS) + 1,
    )

    def cumulative(index: Ints, shape: tuple[int, ...], weights: Floats | None = None) -> Floats:
        size = int(np.prod(shape))
        counts = np.bincount(index, weights=weights, minlength=size)
        summed: Floats = np.cumsum(counts.reshape(shape), axis=-1)
        return summed

    by_segment = (revision * segments + segment) * scrapes + scrape
    shape = (2, segments, scrapes)
    success = cumulative(by_segment[~failed], shape).astype(np.int64)
    failures = cumulative(by_segment[failed], shape).astype(np.int64)
    by_bucket = ((revision * segments + segment) * latency_buckets + latency_bucket) * scrapes
    latency = cumulative(by_bucket + scrape, (2, segments, latency_buckets, scrapes))
    good = ~failed
    by_score = (revision[good] * score_buckets + score_bucket[good]) * scrapes + scrape[good]
    scores = cumulative(by_score, (2, score_buckets, scrapes))
    score_sum = cumulative(
        revision[good] * scrapes + scrape[good], (2, scrapes), weights=score[good]
    )
    return success, failures, latency.astype(np.int64), scores.astype(np.int64), score_sum
