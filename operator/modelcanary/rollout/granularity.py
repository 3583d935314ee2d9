"""How finely a router can split traffic.

A Gateway API route takes any integer percent. The replicas router has no
proxy: traffic follows pods behind one Service, so with N replicas in total
the canary's share moves in steps of 100/N. The decision core needs the same
arithmetic as the router to know which weight to expect when it reads back,
so it lives here, in the pure layer, and the router imports it.
"""

from __future__ import annotations


def replica_split(total: int, canary_weight: int) -> tuple[int, int]:
    """(stable, canary) replica counts for a canary weight, out of ``total``.

    A weight above 0 gives the canary at least one pod and a weight below 100
    leaves stable at least one, so a 10% step on 4 replicas is 1 pod (25%),
    never 0 (no canary at all).
    """
    if total < 1:
        raise ValueError("total replicas must be at least 1")
    if canary_weight <= 0:
        return total, 0
    if canary_weight >= 100:
        return 0, total
    if total == 1:
        # One pod cannot be split; the canary gets it only at 100%.
        return 1, 0
    canary = min(max(round(total * canary_weight / 100), 1), total - 1)
    return total - canary, canary


def effective_weight(total: int, canary_weight: int) -> int:
    """The canary percent the replicas router really delivers for a requested weight."""
    _, canary = replica_split(total, canary_weight)
    return round(100 * canary / total)
