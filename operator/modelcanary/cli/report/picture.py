"""The report's picture: one panel for the weights and one per metric (matplotlib).

matplotlib is the ``modelcanary[report]`` extra, imported only when a picture is
drawn; SVG keeps its text as text, so the HTML page can be searched and read.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modelcanary.cli.report.shared import (
    BOUND_COLORS,
    CANDIDATE_COLOR,
    MARKER_STYLES,
    STABLE_COLOR,
    matplotlib_or_hint,
    when,
)
from modelcanary.cli.timeline import Marker, MarkerKind, Point, Timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def render_svg(timeline: Timeline) -> str:
    figure = draw(timeline)
    buffer = io.BytesIO()
    # Text stays text (not glyph paths): searchable, and the labels are readable in the HTML.
    import matplotlib as mpl  # noqa: PLC0415

    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "modelcanary"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue().decode()


def render_png(timeline: Timeline) -> bytes:
    figure = draw(timeline)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def draw(timeline: Timeline) -> Figure:
    """One panel for the weights and one per metric, on a shared time axis."""
    matplotlib_or_hint()
    import matplotlib.dates as mdates  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    panels = 1 + len(timeline.metrics)
    # A Figure, not pyplot: no global figure registry to leak into in a long process.
    figure = Figure(figsize=(12, 1.2 + 2.3 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    figure.suptitle(
        f"{timeline.namespace}/{timeline.name}: {when(timeline.window.start)} to "
        f"{when(timeline.window.end)}",
        fontsize=12,
    )
    weights = axes[0]
    _line(weights, timeline.candidate_weight, "candidate %", CANDIDATE_COLOR, steps=True)
    _line(weights, timeline.stable_weight, "stable %", STABLE_COLOR, steps=True)
    weights.set_ylim(-5, 110)
    weights.set_ylabel("traffic %")
    weights.set_title("traffic weights", loc="left", fontsize=10)
    for axis, panel in zip(axes[1:], timeline.metrics, strict=True):
        _line(axis, panel.candidate, "candidate", CANDIDATE_COLOR)
        _line(axis, panel.stable, "stable", STABLE_COLOR)
        for bound in panel.bounds:
            _line(
                axis,
                bound.points,
                bound.label,
                BOUND_COLORS.get(bound.side, "#c92a2a"),
                dashed=True,
                thin=bound.relative,
            )
        title = f"{panel.name} (failed)" if panel.failed else panel.name
        axis.set_title(
            title, loc="left", fontsize=10, color="#c92a2a" if panel.failed else "#212529"
        )
        if not panel.candidate and not panel.stable:
            axis.text(0.5, 0.5, "no values in this window", transform=axis.transAxes, ha="center")
    # About ten pixels on a 12-inch figure: closer labels would print over each other.
    nearby = timeline.window.seconds / 60
    for index, axis in enumerate(axes):
        _markers(axis, timeline.markers, labelled=index == 0, nearby=nearby)
        axis.grid(True, alpha=0.25)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper left", fontsize=8, framealpha=0.8)
    axes[-1].set_xlim(timeline.window.start, timeline.window.end)
    clock = mdates.DateFormatter("%H:%M:%S", tz=UTC)  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_formatter(clock)
    axes[-1].set_xlabel("time (UTC)")
    return figure


def _line(
    axis: Axes,
    points: Sequence[Point],
    label: str,
    color: str,
    *,
    steps: bool = False,
    dashed: bool = False,
    thin: bool = False,
) -> None:
    if not points:
        return
    times = [datetime.fromtimestamp(at, UTC) for at, _ in points]
    values = [value for _, value in points]
    axis.plot(
        times,  # type: ignore[arg-type]  # matplotlib converts datetimes; its stubs say floats
        values,
        label=label,
        color=color,
        linestyle="--" if dashed else "-",
        linewidth=1.0 if thin or dashed else 1.6,
        drawstyle="steps-post" if steps else "default",
        # Each evaluation as a dot: a lone value (one evaluation) is no line at all.
        marker="." if not (steps or dashed) else None,
        markersize=4,
    )


def _markers(axis: Axes, markers: Sequence[Marker], *, labelled: bool, nearby: float) -> None:
    for marker in markers:
        color, style = MARKER_STYLES[marker.kind]
        at = datetime.fromtimestamp(marker.at, UTC)
        axis.axvline(at, color=color, linestyle=style, linewidth=1.2, alpha=0.9)  # type: ignore[arg-type]
    if not labelled:
        return
    # Markers a few pixels apart (a canary's start and its first step) share one
    # label; two rotated labels on the same spot would print over each other.
    for group in _grouped(markers, nearby):
        lead = next((m for m in group if m.kind is not MarkerKind.STEP), group[0])
        axis.annotate(
            # One column per marker once rotated, instead of one line running off the panel.
            "\n".join(marker.label for marker in group),
            xy=(datetime.fromtimestamp(group[0].at, UTC), 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color=MARKER_STYLES[lead.kind][0],
        )


def _grouped(markers: Sequence[Marker], nearby: float) -> list[list[Marker]]:
    groups: list[list[Marker]] = []
    for marker in sorted(markers, key=lambda m: m.at):
        if groups and marker.at - groups[-1][0].at <= nearby:
            groups[-1].append(marker)
        else:
            groups.append([marker])
    return groups
