"""Reading Prometheus' text exposition format: the few things the scale bench needs.

A controller's /metrics, and Prometheus's own, are read before and after a
phase; the figures are the differences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, metric: str) -> Iterator[tuple[dict[str, str], float]]:
    """Every sample of ``metric`` (exactly that name) with its labels."""
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        rest = line[len(metric) :]
        if rest.startswith("{"):
            close = rest.rfind("}")
            labels = dict(_LABEL.findall(rest[1:close]))
            value = rest[close + 1 :].split()[0]
        elif rest.startswith(" "):
            labels, value = {}, rest.split()[0]
        else:
            continue  # a longer name with this prefix
        yield labels, float(value)


def total(text: str, metric: str, **match: str) -> float:
    """The sum of ``metric``'s samples whose labels include ``match``."""
    return sum(
        value
        for labels, value in samples(text, metric)
        if all(labels.get(key) == wanted for key, wanted in match.items())
    )


def series_objects(text: str, metric: str, **match: str) -> set[tuple[str, str]]:
    """(namespace, name) of every series of ``metric`` whose labels include ``match``.

    A controller's per-object series exist in a fresh process only for the
    objects it has reconciled since it started: that is how the restart phase
    tells when every object has been reconciled again.
    """
    return {
        (labels.get("namespace", ""), labels.get("name", ""))
        for labels, _ in samples(text, metric)
        if all(labels.get(key) == wanted for key, wanted in match.items())
    }


def buckets(text: str, histogram: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound (``le``), summed over labels."""
    found: dict[float, float] = {}
    for labels, value in samples(text, histogram + "_bucket"):
        bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        found[bound] = found.get(bound, 0.0) + value
    return found


def quantile_bound(
    before: Mapping[float, float], after: Mapping[float, float], q: float
) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile of the observations made
    between two readings of a histogram (None if there were none): the true value is at
    most this, and above the bucket below."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    count = delta.get(math.inf, 0.0)
    if count <= 0:
        return None
    rank = math.ceil(q * count)
    for bound in sorted(delta):
        if delta[bound] >= rank:
            return bound
    return math.inf
