"""The scale report's table: one row per figure, our operator beside Argo Rollouts.

Pure: it takes the two results (dicts as ``bench.operator_scale`` and
``bench.argo_scale`` record them) and returns markdown, so it is tested
without a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Row:
    label: str
    path: tuple[str, ...]
    """Where the figure is in a result, key by key."""
    digits: int = 1
    argo_path: tuple[str, ...] | None = None
    """Where it is in Argo's result when that differs; () when Argo has no such figure."""


ROWS = (
    Row("startup (s)", ("startup_seconds",), 2),
    Row("create → all Healthy (s)", ("healthy_all_seconds",)),
    Row("RSS at Healthy (MiB)", ("rss_mib", "healthy")),
    Row("RSS after the rest window (MiB)", ("rss_mib", "after_rest")),
    Row("CPU at rest (cores)", ("rest", "cpu_cores"), 4),
    Row("API requests/min at rest", ("rest", "api_requests_per_minute")),
    Row("passes/min at rest (Argo: reconciles)", ("rest", "passes_per_minute")),
    Row("reaction p50 (s)", ("reaction_seconds", "p50"), 3),
    Row("reaction p99 (s)", ("reaction_seconds", "p99"), 3),
    Row("restart: all reconciled again (s)", ("restart", "all_reconciled_seconds")),
    Row("restart: peak API requests/s", ("restart", "peak_api_requests_per_second"), 0),
    Row("full GC pauses over the ramp (s)", ("gc", "ramp", "full_pause_seconds"), 2, ()),
    Row("full GC pauses in the restart (s)", ("gc", "restart", "full_pause_seconds"), 2, ()),
    Row("analysis tick lag p99 (s)", ("canaries", "tick_lag_p99_seconds"), 3, ()),
    Row("Prometheus queries per interval", ("canaries", "prometheus_queries_per_interval"), 1, ()),
)

# Lower is better for every figure. The targets by N: (limit, strict), strict
# where it says "under" rather than "at most".
TARGETS: dict[int, dict[str, tuple[float, bool]]] = {
    1000: {
        "create → all Healthy (s)": (60, False),
        "RSS at Healthy (MiB)": (250, False),
        "RSS after the rest window (MiB)": (250, False),
        "CPU at rest (cores)": (0.02, False),
        "API requests/min at rest": (60, False),
        "reaction p99 (s)": (1.0, True),
    },
    10000: {
        "RSS at Healthy (MiB)": (1.5 * MIB_PER_GIB, True),
        "RSS after the rest window (MiB)": (1.5 * MIB_PER_GIB, True),
        "CPU at rest (cores)": (0.1, True),
    },
}


def lookup(result: Mapping[str, Any] | None, path: tuple[str, ...]) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def cell(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | int):
        return f"{value:.{digits}f}" if digits else f"{value:.0f}"
    return str(value)


def target_text(row: Row, n: int) -> str:
    if row.label == "Prometheus queries per interval":
        return "O(query shapes), not O(N)"
    comparison = "≤ Argo" if row.argo_path != () else ""
    target = TARGETS.get(n, {}).get(row.label)
    if target is None:
        return comparison or "—"
    limit, strict = target
    bound = f"{'<' if strict else '≤'} {limit:g}"
    return f"{bound}, {comparison}" if comparison else bound


def verdicts(
    ours: Mapping[str, Any], argo: Mapping[str, Any] | None, n: int
) -> list[tuple[str, bool | None, str]]:
    """(figure, met?, how) for every target the table names; None when not measured."""
    found: list[tuple[str, bool | None, str]] = []
    for row in ROWS:
        value = lookup(ours, row.path)
        target = TARGETS.get(n, {}).get(row.label)
        if target is not None:
            limit, strict = target
            if value is None:
                found.append((row.label, None, f"target {limit:g}: not measured"))
            else:
                met = value < limit if strict else value <= limit
                found.append((row.label, met, f"{cell(value, row.digits)} against {limit:g}"))
        if row.argo_path == () or argo is None:
            continue
        theirs = lookup(argo, row.argo_path or row.path)
        if value is None or theirs is None:
            continue
        found.append(
            (
                f"{row.label} vs Argo",
                value <= theirs,
                f"{cell(value, row.digits)} against Argo's {cell(theirs, row.digits)}",
            )
        )
    return found


def table(
    ours: Mapping[str, Any] | None,
    argo: Mapping[str, Any] | None,
    n: int,
    *,
    title: str,
    format_cell: Callable[[Any, int], str] = cell,
) -> str:
    lines = [
        f"### {title}",
        "",
        "| figure | modelcanary | Argo Rollouts | target |",
        "|---|---:|---:|---|",
    ]
    for row in ROWS:
        theirs = (
            "n/a"
            if row.argo_path == ()
            else format_cell(lookup(argo, row.argo_path or row.path), row.digits)
        )
        ours_text = format_cell(lookup(ours, row.path), row.digits)
        lines.append(f"| {row.label} | {ours_text} | {theirs} | {target_text(row, n)} |")
    return "\n".join(lines)
