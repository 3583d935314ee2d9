"""Cumulative counters as a count query returns them, for the judge's tests."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from modelcanary.analysis.counts import Answer, Series

Q = 'sum(x{revision="{{revision}}"})'
BOUNDS = (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.0075, 0.01, 0.02, 0.05, 0.1, math.inf)


def le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def errors(
    failed: Mapping[str, float], total: Mapping[str, float], label: str | None = None
) -> dict[str, Answer]:
    """``failed``/``total`` by slice ("" when unsliced)."""

    def answer(counts: Mapping[str, float]) -> Answer:
        return Answer(tuple(Series({label: s} if label else {}, v) for s, v in counts.items()))

    return {"failed": answer(failed), "total": answer(total)}


def histogram(
    values: Mapping[str, Sequence[float]],
    label: str | None = None,
    bounds: Sequence[float] = BOUNDS,
) -> dict[str, Answer]:
    """Cumulative buckets of every value observed so far, by slice."""
    series = []
    for slice_value, observed in values.items():
        for bound in bounds:
            labels = {"le": le(bound), **({label: slice_value} if label else {})}
            series.append(Series(labels, float(sum(1 for v in observed if v <= bound))))
    return {"buckets": Answer(tuple(series))}
