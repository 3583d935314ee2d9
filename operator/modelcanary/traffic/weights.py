"""Weight arithmetic that every router shares. Pure: no kr8s, no I/O.

Routers read back what is really configured (backend weights of a route, ready
pods behind a Service) and report it as whole percents. The decision core
compares those percents with what it expects, so the conversion has to be
exact where the core's own arithmetic is exact, and it rounds the way
:func:`modelcanary.rollout.granularity.effective_weight` does: Python's
``round``, half to even.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction


def check_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """``weights`` (revision -> percent) if they are whole percents summing to 100."""
    for revision, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"weight of {revision} must be an integer 0..100, not {weight!r}")
    if sum(weights.values()) != 100:
        raise ValueError(f"weights must sum to 100, not {sum(weights.values())}: {dict(weights)}")
    return dict(weights)


def percentages(amounts: Mapping[str, int]) -> dict[str, int]:
    """Non-negative amounts (backend weights, ready pods) as whole percents summing to 100.

    Each share is rounded half to even, like the decision core's expectation;
    with two entries those roundings always add up to 100, because 100 is
    even. With more entries, the few percents the roundings miss or overshoot
    go to (or come from) the entries that rounding treated worst. Nothing to
    share (all zero) gives all zeros.
    """
    total = sum(amounts.values())
    if any(amount < 0 for amount in amounts.values()):
        raise ValueError(f"amounts must not be negative: {dict(amounts)}")
    if total == 0:
        return dict.fromkeys(amounts, 0)
    exact = {key: Fraction(100 * amount, total) for key, amount in amounts.items()}
    shares = {key: round(value) for key, value in exact.items()}
    missing = 100 - sum(shares.values())
    if missing:
        step = 1 if missing > 0 else -1
        # Most under-rounded first when adding, most over-rounded first when taking.
        order = sorted(exact, key=lambda key: (-step * (exact[key] - shares[key]), key))
        for key in order[: abs(missing)]:
            shares[key] += step
    return shares
