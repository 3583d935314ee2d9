"""Small exact statistics for the report: binomial tails, Clopper-Pearson, quantiles.

Standard library only, so the numbers do not depend on scipy being installed;
the bench cross-checks them against scipy when it is importable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, math.fsum(math.exp(_log_pmf(i, n, p)) for i in range(k, n + 1)))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    return 1.0 - binomial_sf(k + 1, n, p)


def binomial_upper_bound(n: int, p: float, tail: float) -> int:
    """The least ``k`` with P(X > k) <= ``tail``: counts above it are implausible."""
    k = 0
    while binomial_sf(k + 1, n, p) > tail:
        k += 1
    return k


def _bisect(function: Callable[[float], float], target: float, increasing: bool) -> float:
    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        above = function(middle) > target
        if above == increasing:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial proportion ``k / n``."""
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else _bisect(lambda p: binomial_sf(k, n, p), tail, increasing=True)
    high = 1.0 if k == n else _bisect(lambda p: binomial_cdf(k, n, p), tail, increasing=False)
    return low, high


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by nearest rank; NaN values are misses and sort last (inf)."""
    ordered = sorted(math.inf if math.isnan(v) else v for v in values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
