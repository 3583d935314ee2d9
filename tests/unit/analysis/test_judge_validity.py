"""The sequential judge keeps its false-rollback promise on simulated canaries, and
still catches what it should.

A small world of its own, pure Python and seeded (the full simulator, with
scrape offsets and stalls at random instants, is ``make bench-judge``; a test
does not import a bench): between two looks the candidate and stable answer
Poisson numbers of requests; each fails with a small probability and lands in
a latency bucket; each revision's process sometimes *hiccups*, slowing the
requests that arrive during the pause together (correlation within one
revision, the same for both); in the stall family the whole machine stalls
for some intervals, slowing every request of both revisions. The counters are
cumulative and handed to the real judge as Prometheus answers.

Validity is asserted at a large alpha (0.2), where a broken test would show
in a few hundred canaries: the number of false rollbacks must not exceed what
Binomial(n, alpha) allows with probability 1e-4. The bound is computed, not
eyeballed. The judge is conservative (Ville's inequality is not tight), so
the count is normally well below n * alpha.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from modelcanary.analysis.counts import Answer, Series
from modelcanary.analysis.judge import Arms, judge
from modelcanary.api.analysis import Metric
from modelcanary.api.judging import CountJudgement, Verdict

pytestmark = pytest.mark.unit

ERRORS = Metric.model_validate(
    {
        "name": "errors",
        "errors": {
            "failed": 'sum(requests_total{revision="{{revision}}",code=~"5.."})',
            "total": 'sum(requests_total{revision="{{revision}}"})',
            "tolerance": 0,
        },
    }
)
LATENCY = Metric.model_validate(
    {
        "name": "latency",
        "latency": {
            "buckets": 'sum by (le) (duration_seconds_bucket{revision="{{revision}}"})',
            "tolerance": 0.1,
        },
    }
)
BOUNDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, math.inf)
BASE_ERRORS = 0.01
HICCUP_CHANCE, HICCUP_SHARE, HICCUP_SECONDS = 0.3, 0.1, 0.04
STALL_CHANCE, STALL_SECONDS = 0.2, 0.2


@dataclass
class Revision:
    """One revision's cumulative counters."""

    failed: int = 0
    total: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))

    def answers(self) -> dict[str, Mapping[str, Answer]]:
        """What Prometheus returns: no series before the first request (or error)."""
        none: Mapping[str, str] = {}
        errors = {
            "failed": Answer((Series(none, self.failed),) if self.failed else ()),
            "total": Answer((Series(none, self.total),) if self.total else ()),
        }
        cumulative, series = 0, []
        for bound, count in zip(BOUNDS, self.buckets, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else repr(bound)
            series.append(Series({"le": le}, cumulative))
        latency = {"buckets": Answer(tuple(series) if self.total else ())}
        return {"errors": errors, "latency": latency}


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: small means only."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def serve(
    rng: random.Random,
    revision: Revision,
    requests: int,
    error_rate: float,
    slower: float,
    *,
    stalled: bool = False,
) -> None:
    """One interval of one revision: errors, latencies, and now and then a hiccup.

    A hiccup pauses the process for a tenth of the interval: every request that
    arrives meanwhile (each arrives at a uniform time) waits for it, together.
    Each request is equally likely to be caught whatever the revision's traffic,
    so the null holds request by request while the slow ones come in clusters.
    """
    hiccup = rng.random() < HICCUP_CHANCE
    start = rng.random() * (1 - HICCUP_SHARE)
    for _ in range(requests):
        revision.total += 1
        revision.failed += rng.random() < error_rate
        latency = 0.01 * math.exp(0.6 * rng.gauss(0.0, 1.0)) * slower
        if hiccup and start <= rng.random() < start + HICCUP_SHARE:
            latency += HICCUP_SECONDS
        if stalled:  # the whole machine stood still: every request of the interval waited
            latency += STALL_SECONDS
        revision.buckets[next(i for i, b in enumerate(BOUNDS) if latency <= b)] += 1


@dataclass(frozen=True)
class Canary:
    candidate_rps: float
    candidate_errors: float = BASE_ERRORS
    candidate_slower: float = 1.0
    stalls: bool = False
    looks: int = 60


def rolled_back_at(
    rng: random.Random, canary: Canary, alpha: float, metrics: tuple[Metric, ...]
) -> int | None:
    """The look at which the judge fails the canary (look 0 is the baseline), or None."""
    candidate, stable = Revision(), Revision()
    serve(rng, stable, 200, BASE_ERRORS, 1.0)  # stable has served before the canary
    state: dict[str, CountJudgement | None] = {m.name: None for m in metrics}
    for look in range(canary.looks):
        if look:
            stalled = canary.stalls and rng.random() < STALL_CHANCE
            c_requests = poisson(rng, canary.candidate_rps)
            s_requests = poisson(rng, 4 * canary.candidate_rps)
            c_errors, c_slower = canary.candidate_errors, canary.candidate_slower
            serve(rng, candidate, c_requests, c_errors, c_slower, stalled=stalled)
            serve(rng, stable, s_requests, BASE_ERRORS, 1.0, stalled=stalled)
        c_answers, s_answers = candidate.answers(), stable.answers()
        for metric in metrics:
            arms = Arms(c_answers[metric.name], s_answers[metric.name])
            judged = judge(metric, alpha / len(metrics), state[metric.name], arms)
            state[metric.name] = judged.state
            if judged.result.verdict is Verdict.FAIL:
                return look
    return None


def binomial_upper_bound(n: int, p: float, tail: float) -> int:
    """The least k with P(X > k) <= tail for X ~ Binomial(n, p), by exact summation."""

    def pmf(k: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))

    above, k = 1.0 - pmf(0), 0
    while above > tail:
        k += 1
        above -= pmf(k)
    return k


RATES = (3.0, 10.0, 30.0)


def test_binomial_bound_is_the_exact_tail_quantile() -> None:
    # P(X > 8) for Binomial(10, 0.5) is 11/1024 > 0.01 and P(X > 9) = 1/1024 <= 0.01.
    assert binomial_upper_bound(10, 0.5, 0.01) == 9
    assert binomial_upper_bound(10, 0.5, 0.011) == 8


def test_false_rollbacks_stay_within_alpha_under_the_null() -> None:
    rng = random.Random(20261127)
    n, alpha = 300, 0.2
    false = sum(
        rolled_back_at(rng, Canary(RATES[i % 3]), alpha, (ERRORS, LATENCY)) is not None
        for i in range(n)
    )
    allowed = binomial_upper_bound(n, alpha, 1e-4)
    assert allowed == 87  # n * alpha = 60, plus 3.9 standard deviations (6.9 each)
    assert false <= allowed, f"{false} false rollbacks in {n} null canaries at alpha {alpha}"


def test_twenty_percent_errors_are_caught_within_a_few_looks() -> None:
    rng = random.Random(7)
    runs = [
        rolled_back_at(rng, Canary(RATES[i % 3], candidate_errors=0.2), 0.01, (ERRORS,))
        for i in range(30)
    ]
    quick = [look for look in runs if look is not None and look <= 15]
    assert len(quick) >= 25, runs


def test_a_slower_candidate_is_caught() -> None:
    rng = random.Random(8)
    runs = [
        rolled_back_at(rng, Canary(10.0, candidate_slower=3.0), 0.01, (LATENCY,)) for _ in range(10)
    ]
    assert all(look is not None and look <= 20 for look in runs), runs


def test_a_machine_wide_stall_is_never_rolled_back() -> None:
    rng = random.Random(9)
    runs = [
        rolled_back_at(rng, Canary(RATES[i % 3], stalls=True), 0.01, (ERRORS, LATENCY))
        for i in range(30)
    ]
    assert runs == [None] * 30
