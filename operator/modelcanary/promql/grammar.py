"""The part of PromQL's vocabulary the batching parser knows, by what each word does.

Kept apart from the parser (``promql.batch_parser``) so that the list of what is
vouched for reads as one table: a function or operator missing here makes a
template run singly, never batched wrongly.
"""

from __future__ import annotations

from typing import Final

AGGREGATIONS: Final = frozenset({"sum", "avg", "min", "max", "count"})
RANGE_FUNCTIONS: Final = frozenset(
    {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets"}
    | {
        f"{statistic}_over_time"
        for statistic in ("avg", "min", "max", "sum", "count", "last", "stddev", "stdvar")
    }
    | {"present_over_time"}
)
"""Functions of one range vector that compute each series on its own and keep its labels."""

SERIES_FUNCTIONS: Final = frozenset(
    {"abs", "ceil", "floor", "exp", "ln", "log2", "log10", "sqrt", "sgn"}
)
"""Functions of one instant vector that compute each series on its own and keep its labels."""


OTHER_AGGREGATIONS: Final = frozenset(
    {"stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group", "limitk"}
    | {"limit_ratio"}
)
"""Aggregations the parser knows by name but does not vouch for (a template with one
runs singly)."""
KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "atan2", "start", "end"}
)
"""Words that are never a metric's name where an expression starts."""
PRECEDENCE_LEVELS: Final = (
    ("or",),
    ("and", "unless"),
    ("==", "!=", "<=", "<", ">=", ">"),
    ("+", "-"),
    ("*", "/", "%", "atan2"),
    ("^",),
)
"""PromQL's binary operators, loosest binding first."""
PRECEDENCE: Final = {
    operator: level
    for level, operators in enumerate(PRECEDENCE_LEVELS, start=1)
    for operator in operators
}
SET_OPERATORS: Final = frozenset({"and", "or", "unless"})
"""Binary operators between two vectors that match series by labels, never combine values."""
SCALAR_PARAMETERS: Final = {
    "round": (0, 1),
    "clamp": (2, 2),
    "clamp_min": (1, 1),
    "clamp_max": (1, 1),
    **dict.fromkeys(SERIES_FUNCTIONS, (0, 0)),
}
"""Per-series functions of an instant vector and then (least, most) number literals."""
