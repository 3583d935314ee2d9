"""Anytime-valid evidence that one revision's requests are worse than another's.

The judge compares the candidate with the stable revision on the same time
axis. Its data is a stream of *blocks*: between two looks at Prometheus, the
candidate answered ``n_c`` requests of which ``a`` had the event (failed, was
slower than a bucket bound, fell in a score bucket), and stable answered
``n_s`` with ``c`` events. Conditioning on each block's margins (``n_c``,
``n_s`` and the total events ``m = a + c``) is what makes the test immune to
anything that moves both revisions at once, such as a stall of the machine, a
traffic spike or a downstream dependency failing: under "the candidate is no
different", the router picked which requests went to the candidate without
looking at their outcome, so given the margins ``a`` is hypergeometric,
whatever the common event rate was in that block and however it changed.
With an odds ratio ``exp(psi)`` between the revisions, ``a`` follows Fisher's
noncentral hypergeometric distribution, whose likelihood in ``psi`` is exact
and cheap (the ``{ψ x}`` term over a sum of binomial products).

The test is a mixture of likelihood ratios over a grid of odds ratios (the
"method of mixtures", Robbins; for 2x2 tables in blocks, Turner and Grünwald;
for count data in canaries, Lindon and Malek). For a one-sided null "odds
ratio at most ``exp(psi0)``", every component with ``psi > psi0`` has a
per-block likelihood ratio whose expectation is at most one under the null
(the family has a monotone likelihood ratio), so each product over blocks,
and their average, is a nonnegative supermartingale starting at one: an
e-process. Ville's inequality then bounds the chance that it *ever* reaches
``1/alpha`` by ``alpha``, which is why the operator may look after every
interval, for as long as the canary lasts, without spending more than alpha.

Two refinements for real traffic:

* A block's ratio is capped (``min(ratio, cap)`` has an expectation no larger
  than the ratio's, so the cap keeps validity). Requests of one process are
  not quite independent: a pause of that one process slows a handful of its
  requests together. The cap bounds what one such cluster can contribute, so
  a false rollback needs several independent bad blocks, not one.
* The estimate is the Mantel-Haenszel odds ratio across blocks (consistent
  when the baseline rate moves between blocks), and the interval inverts the
  same mixture over the grid: the odds ratios the evidence has not ruled out.

Pure: standard library only. Numbers are floats because counts come from
Prometheus as floats; they are whole numbers in every valid input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

GRID: Final[tuple[float, ...]] = (
    -6.0,
    -4.0,
    -2.5,
    -1.5,
    -0.75,
    -0.3,
    0.0,
    0.3,
    0.75,
    1.5,
    2.5,
    4.0,
    6.0,
)
"""Log odds ratios the mixture puts weight on, from 1/400 to 400 times the odds: dense
enough near 1 for small effects, reaching far enough that a candidate failing where stable
never does is caught within a few requests."""

DEFAULT_CAP: Final = 1e3
"""The most one block may multiply a component's evidence by."""
PRIOR_BLOCKS: Final = 10
"""How many blocks of ordinary (binomial) dispersion the overdispersion estimate starts from."""
MAX_BLOCK_DISPERSION: Final = 25.0
"""The most one block adds to the overdispersion sum: a residual of 5 deviations. One
block far off the estimate (an estimate from a handful of requests) tempers the next
ones by about a third, not to nothing; clusters of slow requests still add up."""

_TAIL: Final = 40.0
"""Terms of a normalising sum more than this many log units below its largest are
dropped: their share is below e^-40 of the sum, far below any decision's resolution."""

Side = Literal["greater", "two-sided"]


@dataclass(frozen=True)
class Table:
    """One block for one event: the candidate's and stable's requests and events."""

    candidate_events: float
    candidate_total: float
    stable_events: float
    stable_total: float

    @property
    def informative(self) -> bool:
        """Whether the block's margins leave the candidate's events free to vary."""
        events = self.candidate_events + self.stable_events
        total = self.candidate_total + self.stable_total
        return self.candidate_total > 0 and self.stable_total > 0 and 0 < events < total


def log_likelihoods(table: Table, grid: Sequence[float]) -> list[float]:
    """The conditional log-likelihood of the candidate's events at each ``psi`` in ``grid``.

    Terms that do not depend on ``psi`` are left out, so only differences between
    grid points mean anything. An uninformative block gives zeros.
    """
    if not table.informative:
        return [0.0] * len(grid)
    n1 = round(table.candidate_total)
    n2 = round(table.stable_total)
    m = round(table.candidate_events + table.stable_events)
    x = round(table.candidate_events)
    low, high = max(0, m - n2), min(n1, m)
    base = [_log_choose(n1, u) + _log_choose(n2, m - u) for u in range(low, high + 1)]
    return [
        psi * x - _log_sum_exp([b + psi * (low + i) for i, b in enumerate(base)]) for psi in grid
    ]


def residual(table: Table, psi: float) -> float | None:
    """How far the candidate's events lie from what odds ratio ``exp(psi)`` expects
    given the block's margins, in standard deviations; None for a block without
    information."""
    if not table.informative:
        return None
    n1 = round(table.candidate_total)
    n2 = round(table.stable_total)
    m = round(table.candidate_events + table.stable_events)
    low, high = max(0, m - n2), min(n1, m)
    logs = [_log_choose(n1, u) + _log_choose(n2, m - u) + psi * u for u in range(low, high + 1)]
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = math.fsum(weights)
    mean = math.fsum((low + i) * w for i, w in enumerate(weights)) / total
    variance = math.fsum((low + i - mean) ** 2 * w for i, w in enumerate(weights)) / total
    if variance <= 1e-12:
        return None
    return (table.candidate_events - mean) / math.sqrt(variance)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values if v - top > -_TAIL))


@functools.cache
def grid_with(psi0: float, side: Side) -> tuple[float, ...]:
    """:data:`GRID` with the null's boundary (and its mirror, two-sided) on it."""
    points = set(GRID) | {psi0}
    if side == "two-sided":
        points.add(-psi0)
    return tuple(sorted(points))


@functools.cache
def components(grid: tuple[float, ...], psi0: float, side: Side) -> tuple[tuple[float, float], ...]:
    """(alternative, null boundary) pairs the test mixes, in grid order. Cached: every
    event of every look asks for the same few."""
    upper = tuple((psi, psi0) for psi in grid if psi > psi0)
    if side == "greater":
        return upper
    return tuple((psi, -psi0) for psi in grid if psi < -psi0) + upper


@dataclass
class Evidence:
    """Everything the judge keeps about one event stream between looks."""

    grid: tuple[float, ...]
    log_likelihood: list[float]
    """Cumulative conditional log-likelihood at each grid point."""
    test: list[float]
    """Cumulative capped log-ratio of each test component (see :func:`components`)."""
    mh_numerator: float = 0.0
    mh_denominator: float = 0.0
    dispersion: float = 0.0
    """Sum of squared residuals of past blocks around the estimate of their time."""
    blocks: int = 0
    """Blocks so far that carried information about the odds ratio."""
    candidate_events: float = 0.0
    candidate_total: float = 0.0
    stable_events: float = 0.0
    stable_total: float = 0.0
    """Sums over the judged blocks, for showing the rates behind the estimate."""

    @classmethod
    def start(cls, psi0: float, side: Side) -> Evidence:
        grid = grid_with(psi0, side)
        return cls(grid, [0.0] * len(grid), [0.0] * len(components(grid, psi0, side)))


@dataclass(frozen=True)
class Null:
    """The null being tested: odds ratio at most exp(psi0) (two-sided: within e^+-psi0)."""

    psi0: float = 0.0
    side: Side = "greater"
    cap: float = DEFAULT_CAP
    temper: float = 1.0
    """Each block's likelihood ratio is raised to this power (at most 1). By Jensen,
    E[ratio^t] <= E[ratio]^t <= 1, so the test stays valid; what it buys is robustness
    when requests are not independent (clusters slowed by one pause count for less)."""
    adapt: bool = False
    """Temper further by the overdispersion seen so far: the mean squared residual of
    past blocks around the estimated odds ratio (Pearson's, as in quasi-likelihood),
    pulled towards 1 by :data:`PRIOR_BLOCKS` (see :func:`dispersion_term`). It is
    computed from past blocks only, so each block's power is fixed before its data,
    and Jensen's bound still holds."""

    def __post_init__(self) -> None:
        if self.psi0 < 0:
            raise ValueError("psi0 is a tolerance and cannot be negative")
        if self.cap <= 1:
            raise ValueError("a cap of 1 or less would never let evidence grow")
        if not 0 < self.temper <= 1:
            raise ValueError("temper is a power in (0, 1]")


def update(evidence: Evidence, table: Table, test: Null) -> Evidence:
    """The evidence after one more block.

    A block in which one revision answered nothing compares nothing and changes
    nothing. A block in which both answered but the margins fix the outcome (no
    events, or only events) leaves the test as it was but still counts as
    compared: requests without a single error on either side are good news,
    not missing data.
    """
    if table.candidate_total <= 0 or table.stable_total <= 0:
        return evidence
    a, c = table.candidate_events, table.stable_events
    compared = replace(
        evidence,
        candidate_events=evidence.candidate_events + a,
        candidate_total=evidence.candidate_total + table.candidate_total,
        stable_events=evidence.stable_events + c,
        stable_total=evidence.stable_total + table.stable_total,
    )
    if not table.informative:
        return compared
    block = log_likelihoods(table, evidence.grid)
    at = {psi: value for psi, value in zip(evidence.grid, block, strict=True)}
    log_cap = math.log(test.cap)
    power = test.temper * (overdispersion_temper(evidence) if test.adapt else 1.0)
    test_log = [
        total + min(power * (at[alternative] - at[null]), log_cap)
        for total, (alternative, null) in zip(
            evidence.test, components(evidence.grid, test.psi0, test.side), strict=True
        )
    ]
    n = table.candidate_total + table.stable_total
    b, d = table.candidate_total - a, table.stable_total - c
    return replace(
        compared,
        log_likelihood=[x + y for x, y in zip(evidence.log_likelihood, block, strict=True)],
        test=test_log,
        mh_numerator=evidence.mh_numerator + a * d / n,
        mh_denominator=evidence.mh_denominator + b * c / n,
        dispersion=evidence.dispersion + dispersion_term(table, evidence),
        blocks=evidence.blocks + 1,
    )


def dispersion_term(table: Table, before: Evidence) -> float:
    """What one block adds to the overdispersion sum: its squared residual around the
    estimate of the blocks before it (Pearson's, as in quasi-likelihood), at most
    :data:`MAX_BLOCK_DISPERSION`.

    Before there is an estimate, and while it is 0 or infinite (the event on one
    side only), the residual is taken around no difference. The residual also
    carries the estimate's own error, which errs towards tempering more, and
    that is what keeps false rollbacks down while requests come in clusters
    (``make bench-judge``). The cap is for an estimate that is far off: a
    candidate's first interval may hold a few requests without the event, whose
    estimate near 0 put the next block hundreds of deviations away, and a steady
    real effect then read as wild overdispersion that tempered every later
    block to nothing (a 30% slower candidate was promoted that way).
    """
    fitted = estimate(before)
    psi = 0.0
    if fitted is not None and 0 < fitted < math.inf:
        psi = max(-6.0, min(6.0, math.log(fitted)))
    deviation = residual(table, psi)
    return 1.0 if deviation is None else min(deviation**2, MAX_BLOCK_DISPERSION)


def overdispersion_temper(evidence: Evidence) -> float:
    """1 over the estimated overdispersion (at most 1): 1 when past blocks varied as
    independent requests would, 1/2 when their squared residuals were twice that."""
    estimated = (evidence.dispersion + PRIOR_BLOCKS) / (evidence.blocks + PRIOR_BLOCKS)
    return min(1.0, 1.0 / estimated)


def log_mean_exp(logs: Sequence[float]) -> float:
    """log of the average of ``exp(logs)``; 0 (an average of nothing is 1) when empty."""
    if not logs:
        return 0.0
    return _log_sum_exp(logs) - math.log(len(logs))


def log_e_value(evidence: Evidence) -> float:
    """log of the e-process: the average of its components' products."""
    return log_mean_exp(evidence.test)


def estimate(evidence: Evidence) -> float | None:
    """The Mantel-Haenszel odds ratio over the judged blocks; None before any evidence."""
    if evidence.mh_denominator > 0:
        return evidence.mh_numerator / evidence.mh_denominator
    if evidence.mh_numerator > 0:
        return math.inf
    return None


@dataclass(frozen=True)
class Interval:
    """Odds ratios not ruled out; None for a side the grid cannot bound."""

    low: float | None
    high: float | None


def interval(evidence: Evidence, alpha: float) -> Interval:
    """The odds ratios the evidence has not ruled out at level ``alpha``.

    It is the grid's confidence sequence for a steady odds ratio: a point
    ``psi`` is ruled out when the mixture over the whole grid beats it by
    ``1/alpha``. The log-likelihood is concave in ``psi``, so what is left is
    one interval; its ends are reported as the nearest points ruled out, which
    errs towards a wider interval.
    """
    likelihood = evidence.log_likelihood
    mixture = _log_sum_exp(likelihood) - math.log(len(likelihood))
    threshold = math.log(1 / alpha)
    kept = [i for i, value in enumerate(likelihood) if mixture - value < threshold]
    if not kept:  # cannot happen: the best grid point always beats the average
        return Interval(None, None)
    first, last = kept[0], kept[-1]
    low = math.exp(evidence.grid[first - 1]) if first > 0 else None
    high = math.exp(evidence.grid[last + 1]) if last + 1 < len(evidence.grid) else None
    return Interval(low, high)
