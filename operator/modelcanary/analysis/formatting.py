"""Numbers as a status line shows them: short, and exact enough to act on."""

from __future__ import annotations

import math


def number(value: float) -> str:
    """Compact and exact enough for a status line: 0.2, 0.0123, 1.5e+06."""
    return f"{value:.4g}"


def share(value: float) -> str:
    """A fraction as a percentage: 0.2013 -> 20.1%, 0.00042 -> 0.042%."""
    percent = value * 100
    return f"{percent:.3g}%" if percent < 10 else f"{percent:.1f}%"


def odds(effect: float | None, low: float | None, high: float | None) -> str:
    """An odds ratio with its interval, open ends shown as such: 3.1 [1.6, 6.2]."""
    if effect is None:
        return "odds ratio unknown"
    shown = "inf" if math.isinf(effect) else f"{effect:.3g}"
    lower = f"{low:.3g}" if low is not None else "0"
    upper = f"{high:.3g}" if high is not None else "inf"
    return f"odds ratio {shown} [{lower}, {upper}]"
