"""The distribution a bench prints: min, median, nearest-rank p90 and p95, max.

Nearest rank, not interpolation: with ten runs the p95 is the slowest run, which
is what a timing goal about the tail should be held to.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The smallest value with at least ``q`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def distribution(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "p90": round(nearest_rank(values, 0.9), digits),
        "p95": round(nearest_rank(values, 0.95), digits),
        "max": round(max(values), digits),
    }
