"""The model behind ``modelcanary report``: what happened during a rollout, over time.

Two sources are merged here. Prometheus holds what the operator saw from one
moment to the next (the weight it set, each metric's value for the candidate
and for stable), because it scraped the operator's own ``/metrics``. The
ModelDeployment's ``status.history`` holds what the operator decided and why
(promoted, rolled back, aborted, with the failing metric in the reason). The
picture needs both: a rollback line means little without the error rate
climbing over its bound just before it.

This module does no I/O: the command fetches, this builds, the renderer draws.
So every rule about the picture (which window, which markers, where a relative
bound lies) is tested without a cluster, and a timeline can be built from any
recorded series.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modelcanary.api.analysis import (
    Metric,
)
from modelcanary.api.modeldeployment import (
    HistoryEntry,
    RevisionOutcome,
)
from modelcanary.cli.timeline.window import (
    Window,
    WindowError,
    choose_window,
    default_step,
    parse_moment,
    readable_history,
)
from modelcanary.rollout.decide import FIRST_REVISION_NOTE

__all__ = [
    "CANDIDATE",
    "STABLE",
    "BoundLine",
    "Marker",
    "MarkerKind",
    "MetricPanel",
    "Point",
    "Rollout",
    "Timeline",
    "Window",
    "WindowError",
    "build_timeline",
    "choose_window",
    "default_step",
    "parse_moment",
]

Point = tuple[float, float]
"""(Unix seconds, value), as Prometheus's range API returns them."""

Series = Sequence[Point]

CANDIDATE = "candidate"
MIN_SAMPLES = "minSamples"
"""The name the operator reports the traffic gate under, beside the metrics."""
STABLE = "stable"

DECISION_SCRAPE_LIMIT = timedelta(minutes=2)
"""How long after a canary ends its deciding evaluation may take to reach Prometheus."""


class MarkerKind(enum.StrEnum):
    START = "start"
    STEP = "step"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    ABORT = "abort"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Marker:
    at: float
    kind: MarkerKind
    label: str
    revision: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Rollout:
    """One revision's rollout, a row of the report's summary table."""

    revision: str
    version: str
    outcome: str
    reason: str
    created_at: datetime
    finished_at: datetime | None
    first_revision: bool


@dataclass(frozen=True)
class BoundLine:
    """Where a metric's bound lies over time; relative bounds move with stable."""

    label: str
    side: str
    """"min" or "max": which side of the line is healthy."""
    points: tuple[Point, ...]
    relative: bool


@dataclass(frozen=True)
class MetricPanel:
    name: str
    candidate: tuple[Point, ...]
    stable: tuple[Point, ...]
    bounds: tuple[BoundLine, ...]
    failed: bool
    """Named in the reason of a rollback or abort within the window."""


@dataclass(frozen=True)
class Timeline:
    namespace: str
    name: str
    window: Window
    candidate_weight: tuple[Point, ...]
    stable_weight: tuple[Point, ...]
    metrics: tuple[MetricPanel, ...]
    markers: tuple[Marker, ...]
    rollouts: tuple[Rollout, ...]
    """The rollouts the window covers, oldest first."""

    @property
    def has_data(self) -> bool:
        return bool(self.candidate_weight) or any(
            panel.candidate or panel.stable for panel in self.metrics
        )


# --------------------------------------------------------------------------- the timeline


def build_timeline(
    md: Mapping[str, Any],
    window: Window,
    weight: Series,
    values: Mapping[tuple[str, str], Series],
    *,
    now: datetime,
) -> Timeline:
    """Everything to draw, from the object and the range series.

    ``weight`` is the candidate's weight in percent; ``values`` maps
    ``(metric, "candidate" | "stable")`` to that metric's series.
    """
    metadata = md.get("metadata") or {}
    entries = readable_history(md)
    covered = [
        entry for entry in entries if window.overlaps(entry.created_at, entry.finished_at or now)
    ]
    rollouts = tuple(_rollout(entry) for entry in covered)
    # The operator keeps a metric's last value after the canary ends; drawn on,
    # it would look like analysis that never ran. Only a canary's own span counts.
    canary_spans = [
        (entry.created_at.timestamp(), (entry.finished_at or now).timestamp())
        for entry in covered
        if not _is_first_revision(entry)
    ]
    weight_points = _clip(weight, window)
    markers = [*_decision_markers(covered, window), *_step_markers(weight_points, canary_spans)]
    markers.sort(key=lambda marker: marker.at)
    failing_reasons = [
        entry.reason
        for entry in covered
        if entry.outcome in (RevisionOutcome.ROLLED_BACK, RevisionOutcome.ABORTED)
    ]
    panels = tuple(
        _metric_panel(metric, values, window, canary_spans, failing_reasons)
        for metric in _metrics(md, values)
    )
    return Timeline(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        window=window,
        candidate_weight=weight_points,
        stable_weight=tuple((at, 100.0 - value) for at, value in weight_points),
        metrics=panels,
        markers=tuple(markers),
        rollouts=rollouts,
    )


def _metrics(md: Mapping[str, Any], values: Mapping[tuple[str, str], Series]) -> list[Metric]:
    """The spec's metrics in its order, then any the series name that the spec no
    longer does (a metric removed since): drawn without bounds, not hidden."""
    analysis = (md.get("spec") or {}).get("analysis") or {}
    metrics: list[Metric] = []
    for raw in analysis.get("metrics") or []:
        try:
            metrics.append(Metric.model_validate(raw))
        except ValidationError:
            continue
    known = {metric.name for metric in metrics}
    # minSamples is left out: the operator reports it only while traffic is too
    # low, so the rest of the time its gauge holds a stale count that reads as live.
    for name in sorted({name for name, _ in values} - known - {MIN_SAMPLES}):
        metrics.append(Metric.model_construct(name=name, query=""))
    return metrics


def _metric_panel(
    metric: Metric,
    values: Mapping[tuple[str, str], Series],
    window: Window,
    spans: Sequence[tuple[float, float]],
    failing_reasons: Sequence[str],
) -> MetricPanel:
    candidate = _within_spans(_clip(values.get((metric.name, CANDIDATE), ()), window), spans)
    stable = _within_spans(_clip(values.get((metric.name, STABLE), ()), window), spans)
    edges = (window.start.timestamp(), window.end.timestamp())
    bounds: list[BoundLine] = []
    for side, value in (("min", metric.min), ("max", metric.max)):
        if value is not None:
            bounds.append(
                BoundLine(f"{side} {value:g}", side, tuple((at, value) for at in edges), False)
            )
    relative = (
        ("min", metric.min_relative_to_stable),
        ("max", metric.max_relative_to_stable),
    )
    for side, factor in relative:
        if factor is not None:
            moving = tuple(
                (at, value * factor) if not math.isnan(value) else (at, value)
                for at, value in stable
            )
            bounds.append(BoundLine(f"{side} {factor:g}x stable", side, moving, True))
    failed = any(re.search(rf"\b{re.escape(metric.name)}\b", reason) for reason in failing_reasons)
    return MetricPanel(metric.name, candidate, stable, tuple(bounds), failed)


def _decision_markers(entries: Iterable[HistoryEntry], window: Window) -> list[Marker]:
    markers: list[Marker] = []
    for entry in entries:
        version = entry.predictor.model.version
        first = _is_first_revision(entry)
        if window.contains(entry.created_at):
            label = f"first revision {version}" if first else f"canary {version} starts"
            markers.append(
                Marker(entry.created_at.timestamp(), MarkerKind.START, label, entry.revision)
            )
        if entry.finished_at is None or not window.contains(entry.finished_at):
            continue
        kind = _END_MARKERS.get(entry.outcome)
        if kind is None or (first and kind is MarkerKind.PROMOTION):
            # A first revision's "promotion" is its start: one line, not two.
            continue
        label = f"{_END_VERBS[kind]} {version}"
        markers.append(
            Marker(entry.finished_at.timestamp(), kind, label, entry.revision, entry.reason)
        )
    return markers


_END_MARKERS = {
    RevisionOutcome.PROMOTED: MarkerKind.PROMOTION,
    RevisionOutcome.ROLLED_BACK: MarkerKind.ROLLBACK,
    RevisionOutcome.ABORTED: MarkerKind.ABORT,
    RevisionOutcome.SUPERSEDED: MarkerKind.SUPERSEDED,
}
_END_VERBS = {
    MarkerKind.PROMOTION: "promoted",
    MarkerKind.ROLLBACK: "rolled back",
    MarkerKind.ABORT: "aborted",
    MarkerKind.SUPERSEDED: "superseded",
}


def _step_markers(weight: Series, spans: Sequence[tuple[float, float]]) -> list[Marker]:
    """A step is the candidate's weight rising or falling to a new value above 0
    during a canary. A fall to 0 is the rollout's end, which history names better."""
    markers: list[Marker] = []
    previous: float | None = None
    for at, value in weight:
        if math.isnan(value):
            continue
        # The first point is where the window starts, not a step.
        changed = previous is not None and value != previous
        if changed and value > 0 and _inside(at, spans):
            markers.append(Marker(at, MarkerKind.STEP, f"{value:g}%"))
        previous = value
    return markers


def _rollout(entry: HistoryEntry) -> Rollout:
    return Rollout(
        revision=entry.revision,
        version=entry.predictor.model.version,
        outcome=entry.outcome.value,
        reason=entry.reason,
        created_at=entry.created_at,
        finished_at=entry.finished_at,
        first_revision=_is_first_revision(entry),
    )


def _is_first_revision(entry: HistoryEntry) -> bool:
    return entry.reason in (FIRST_REVISION_NOTE, "first revision")


def _clip(series: Series, window: Window) -> tuple[Point, ...]:
    start, end = window.start.timestamp(), window.end.timestamp()
    return tuple(
        (float(at), float(value)) for at, value in sorted(series) if start <= float(at) <= end
    )


def _inside(at: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(start <= at <= end for start, end in spans)


def _within_spans(series: Series, spans: Sequence[tuple[float, float]]) -> tuple[Point, ...]:
    """The points of each canary, with a NaN between two canaries so no line joins them.

    The evaluation that ends a canary is scraped after the end (up to a scrape
    interval later), and it is the one that matters most: the failing value.
    So past the end, points are kept up to the first one whose value moved,
    which is that evaluation arriving; the unchanged ones after it would be
    the gauge's stale last value.
    """
    ordered = sorted(spans)
    kept: list[Point] = []
    for index, (start, end) in enumerate(ordered):
        limit = end + DECISION_SCRAPE_LIMIT.total_seconds()
        if index + 1 < len(ordered):
            limit = min(limit, ordered[index + 1][0])
        inside = [(at, value) for at, value in series if start <= at <= end]
        after = [(at, value) for at, value in series if end < at < limit]
        settled = inside[-1][1] if inside else None
        for at, value in after:
            if _same(value, settled):
                continue
            inside.append((at, value))
            break
        if inside and kept:
            kept.append((inside[0][0], math.nan))
        kept.extend(inside)
    return tuple(kept)


def _same(value: float, other: float | None) -> bool:
    if other is None:
        return False
    return value == other or (math.isnan(value) and math.isnan(other))
