"""``modelcanary report NAME -o report.html``: a rollout's timeline as a picture.

After a rollback people ask what happened, and a picture answers faster than
``status.history``: the traffic weights stepping up, each metric against its
bound, and the moment the operator promoted or rolled back, with its reason.

The object comes from the API server (what was decided and why); the series
come from the Prometheus that scrapes the operator's own ``/metrics`` (what the
operator saw, moment by moment). Usually that is the Prometheus the analysis
queries, but that address is often cluster-internal, so ``--prometheus``
overrides it. Series are fetched with one range query per metric family,
grouped ``by (metric, revision_role)``, not one query per line.

The output format follows the file's extension: ``.html`` (one self-contained
file: the SVG inline, a summary table and a legend, nothing fetched),
``.svg`` or ``.png``. matplotlib draws; it is the ``modelcanary[report]``
extra, kept out of the operator's image, so it is imported only here and only
when a picture is drawn.

Exit codes: 0 written, 1 could not (no such ModelDeployment, no cluster,
Prometheus unreachable or without the operator's metrics), 2 bad usage.
"""

from __future__ import annotations

import argparse
import html
import io
import math
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from modelcanary.api.base import parse_duration
from modelcanary.cli import common
from modelcanary.cli.timeline import (
    CANDIDATE,
    STABLE,
    Marker,
    MarkerKind,
    Point,
    Timeline,
    Window,
    WindowError,
    build_timeline,
    choose_window,
    default_step,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS: Final = (".html", ".svg", ".png")
INSTALL_HINT: Final = "pip install 'modelcanary[report]'"
QUERY_TIMEOUT_SECONDS: Final = 30.0
SCRAPE_HINT: Final = (
    "Prometheus must scrape the operator's /metrics for the report: with the Helm chart, "
    "--set monitoring.serviceMonitor.enabled=true (and metrics.service.enabled=true), "
    "or a scrape job for the operator's metrics port (8000)"
)

WEIGHT_QUERY: Final = "max(modelcanary_canary_weight_percent{SELECTOR})"
VALUES_QUERY: Final = "max by (metric, revision_role) (modelcanary_analysis_value{SELECTOR})"

CANDIDATE_COLOR: Final = "#d95f02"
STABLE_COLOR: Final = "#1b6ca8"
MARKER_STYLES: Final[dict[MarkerKind, tuple[str, str]]] = {
    MarkerKind.START: ("#2b8a3e", "-."),
    MarkerKind.STEP: ("#868e96", ":"),
    MarkerKind.PROMOTION: ("#2b8a3e", "-"),
    MarkerKind.ROLLBACK: ("#c92a2a", "-"),
    MarkerKind.ABORT: ("#e67700", "-"),
    MarkerKind.SUPERSEDED: ("#868e96", "--"),
}
BOUND_COLORS: Final = {"max": "#c92a2a", "min": "#7048e8"}


class ReportError(Exception):
    """Something the user can fix; the message says what."""


class MissingExtra(ReportError):
    """matplotlib is not installed."""


# --------------------------------------------------------------------------- the command


def add_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="draw a rollout's timeline (weights, metrics against bounds, decisions)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    report.add_argument("name", help="the ModelDeployment")
    common.add_cluster_options(report)
    report.add_argument(
        "--output",
        "-o",
        required=True,
        type=Path,
        help="the file to write: .html (self-contained), .svg or .png",
    )
    report.add_argument(
        "--prometheus",
        default=None,
        help="Prometheus that scrapes the operator (default: spec.analysis.prometheus.address)",
    )
    report.add_argument("--revision", default=None, help="draw this revision's rollout")
    report.add_argument("--since", default=None, help="window start: RFC 3339, or 30m ago")
    report.add_argument("--until", default=None, help="window end: RFC 3339, or 5m ago")
    report.add_argument(
        "--step", default=None, help="query resolution, e.g. 5s (default: from the window)"
    )


def run(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.suffix.lower() not in FORMATS:
        print(
            f"error: cannot tell the format of {output}: use a name ending in "
            + ", ".join(FORMATS),
            file=sys.stderr,
        )
        return 2
    try:
        step = parse_duration(args.step).total_seconds() if args.step else None
    except ValueError as error:
        print(f"error: --step: {error}", file=sys.stderr)
        return 2
    if step is not None and step <= 0:
        print("error: --step must be positive", file=sys.stderr)
        return 2
    try:
        # Before any network call: a missing extra is found in a second, not after the queries.
        _matplotlib()
        md, namespace = fetch_model_deployment(args)
        now = datetime.now(UTC)
        window = choose_window(
            md, now=now, revision=args.revision, since=args.since, until=args.until
        )
        address = args.prometheus or _analysis_address(md)
        weight, values = fetch_series(
            address, namespace, args.name, window, step or default_step(window)
        )
        timeline = build_timeline(md, window, weight, values, now=now)
        if not timeline.has_data:
            raise ReportError(
                f"Prometheus at {address} has no modelcanary_* metrics for "
                f"{namespace}/{args.name} between {_time(window.start)} and "
                f"{_time(window.end)}. {SCRAPE_HINT}"
            )
        write(timeline, output)
    except common.CommandError as error:
        return common.fail(error)
    except WindowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(output)
    return 0


def fetch_model_deployment(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The ModelDeployment as plain data (one GET, as every command does), and its namespace."""
    api, namespace = common.connect(args)
    return common.as_data(common.fetch(api, namespace, args.name)), namespace


def _analysis_address(md: Mapping[str, Any]) -> str:
    analysis = (md.get("spec") or {}).get("analysis") or {}
    address = (analysis.get("prometheus") or {}).get("address")
    if not address:
        raise ReportError("the ModelDeployment has no spec.analysis.prometheus: give --prometheus")
    return str(address)


# --------------------------------------------------------------------------- Prometheus


def selector(namespace: str, name: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"namespace={quoted(namespace)},name={quoted(name)}"


def fetch_series(
    address: str, namespace: str, name: str, window: Window, step: float
) -> tuple[list[Point], dict[tuple[str, str], list[Point]]]:
    """The candidate's weight and every metric's candidate and stable values."""
    import requests  # noqa: PLC0415
    from prometheus_api_client import PrometheusConnect  # noqa: PLC0415
    from prometheus_api_client.exceptions import PrometheusApiClientException  # noqa: PLC0415
    from urllib3.util.retry import Retry  # noqa: PLC0415

    from modelcanary.metrics.prometheus import (  # noqa: PLC0415
        _http_failure,
        _request_failure,
    )

    address = address.rstrip("/")
    # One attempt: a CLI that retries a dead address for a minute looks hung.
    client = PrometheusConnect(url=address, retry=Retry(total=0, raise_on_status=False))
    match = selector(namespace, name)

    start = window.grid_start(step)
    # The client rounds start and end to whole seconds, which can drop the last
    # scrape (a rollback's failing value); the exact ends go in as parameters,
    # which the client sends in place of its own.
    exact = dict(zip(("start", "end"), window.query_range(step), strict=True))

    def query(template: str) -> list[dict[str, Any]]:
        promql = template.replace("SELECTOR", match)
        try:
            data = client.custom_query_range(
                promql,
                start_time=start,
                end_time=window.end,
                step=f"{step:g}s",
                params={"timeout": f"{QUERY_TIMEOUT_SECONDS:g}s", **exact},
                timeout=QUERY_TIMEOUT_SECONDS,
            )
        except PrometheusApiClientException as error:
            reason = _http_failure(str(error), address).error
            raise ReportError(f"the query {promql} failed: {reason}") from None
        except requests.JSONDecodeError:
            raise ReportError(
                f"{address} answered with something that is not JSON: "
                "is it the address of a Prometheus API?"
            ) from None
        except requests.RequestException as error:
            raise ReportError(
                _request_failure(error, address, QUERY_TIMEOUT_SECONDS)
                + " (give the address of a Prometheus you can reach with --prometheus)"
            ) from None
        if not isinstance(data, list):
            raise ReportError(f"Prometheus sent a result that is not a list: {data!r:.80}")
        return data

    try:
        weight_result = query(WEIGHT_QUERY)
        values_result = query(VALUES_QUERY)
    finally:
        client.close()
    weight = _points(weight_result[0]) if weight_result else []
    values: dict[tuple[str, str], list[Point]] = {}
    for series in values_result:
        labels = series.get("metric") or {}
        metric, role = labels.get("metric"), labels.get("revision_role")
        if metric and role in (CANDIDATE, STABLE):
            values[(str(metric), str(role))] = _points(series)
    return weight, values


def _points(series: Mapping[str, Any]) -> list[Point]:
    points: list[Point] = []
    for at, value in series.get("values") or []:
        try:
            points.append((float(at), float(value)))
        except (TypeError, ValueError):
            continue
    return points


# --------------------------------------------------------------------------- drawing


def _matplotlib() -> Any:
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise MissingExtra(f"drawing the report needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    return matplotlib


def write(timeline: Timeline, output: Path) -> None:
    suffix = output.suffix.lower()
    if suffix == ".html":
        data = render_html(timeline).encode()
    elif suffix == ".svg":
        data = render_svg(timeline).encode()
    elif suffix == ".png":
        data = render_png(timeline)
    else:
        raise ReportError(f"cannot tell the format of {output}: use one of {', '.join(FORMATS)}")
    try:
        output.write_bytes(data)
    except OSError as error:
        raise ReportError(f"cannot write {output}: {error.strerror or error}") from None


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
    _matplotlib()
    import matplotlib.dates as mdates  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    panels = 1 + len(timeline.metrics)
    # A Figure, not pyplot: no global figure registry to leak into in a long process.
    figure = Figure(figsize=(12, 1.2 + 2.3 * panels), layout="constrained")
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    figure.suptitle(
        f"{timeline.namespace}/{timeline.name}: {_time(timeline.window.start)} to "
        f"{_time(timeline.window.end)}",
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


# --------------------------------------------------------------------------- HTML

_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SVG_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def inline_svg(svg: str) -> str:
    """The SVG as an HTML element: no XML prologue or DTD, and no namespace URLs,
    which the HTML parser does not need, so the page names no address at all."""
    svg = _SVG_PROLOGUE.sub("", svg, count=1)
    svg = _SVG_METADATA.sub("", svg)
    return _SVG_NAMESPACES.sub("", svg)


def render_html(timeline: Timeline) -> str:
    title = f"{timeline.namespace}/{timeline.name} rollout timeline"
    rows = "\n".join(
        "<tr>"
        f"<td><code>{html.escape(r.revision)}</code></td>"
        f"<td>{html.escape(r.version)}</td>"
        f'<td class="outcome {html.escape(r.outcome)}">{html.escape(r.outcome)}</td>'
        f"<td>{html.escape(r.reason)}</td>"
        f"<td>{_time(r.created_at)}</td>"
        f"<td>{_time(r.finished_at) if r.finished_at else 'running'}</td>"
        f"<td>{_duration(r.created_at, r.finished_at)}</td>"
        "</tr>"
        for r in timeline.rollouts
    )
    decisions = "\n".join(
        f'<li class="{m.kind.value}"><b>{_time(datetime.fromtimestamp(m.at, UTC))}</b> '
        f"{html.escape(m.label)}" + (f": {html.escape(m.reason)}" if m.reason else "") + "</li>"
        for m in timeline.markers
        if m.kind is not MarkerKind.STEP
    )
    steps = ", ".join(
        f"{html.escape(m.label)} at {_time(datetime.fromtimestamp(m.at, UTC))}"
        for m in timeline.markers
        if m.kind is MarkerKind.STEP
    )
    legend = "\n".join(
        [
            _legend_item(CANDIDATE_COLOR, "solid", "candidate: its traffic % and metric values"),
            _legend_item(STABLE_COLOR, "solid", "stable: its traffic % and metric values"),
            _legend_item(BOUND_COLORS["max"], "dashed", "max bound (thin: relative to stable)"),
            _legend_item(BOUND_COLORS["min"], "dashed", "min bound (thin: relative to stable)"),
            *(
                _legend_item(color, _css_style(style), _MARKER_MEANING[kind])
                for kind, (color, style) in MARKER_STYLES.items()
            ),
        ]
    )
    return _PAGE.format(
        title=html.escape(title),
        window=f"{_time(timeline.window.start)} to {_time(timeline.window.end)}",
        rows=rows or '<tr><td colspan="7">no rollout in this window</td></tr>',
        decisions=decisions or "<li>none in this window</li>",
        steps=steps or "none in this window",
        legend=legend,
        svg=inline_svg(render_svg(timeline)),
    )


_MARKER_MEANING: Final = {
    MarkerKind.START: "a canary (or the first revision) starts",
    MarkerKind.STEP: "a step: the candidate's weight changes",
    MarkerKind.PROMOTION: "promotion: the candidate becomes stable",
    MarkerKind.ROLLBACK: "rollback to the last known-good revision",
    MarkerKind.ABORT: "abort: all traffic back to stable",
    MarkerKind.SUPERSEDED: "superseded by a newer spec",
}


def _legend_item(color: str, style: str, text: str) -> str:
    return (
        f'<li><span class="swatch" style="border-top: 3px {style} {color}"></span>'
        f"{html.escape(text)}</li>"
    )


def _css_style(matplotlib_style: str) -> str:
    return {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashed"}.get(
        matplotlib_style, "solid"
    )


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return ""
    seconds = max(0.0, (end - start).total_seconds())
    minutes, rest = divmod(math.floor(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.0f}s"


_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #212529; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
th, td {{ border: 1px solid #dee2e6; padding: 0.3rem 0.6rem; text-align: left;
  vertical-align: top; font-size: 0.9rem; }}
th {{ background: #f1f3f5; }}
.outcome.Promoted {{ color: #2b8a3e; font-weight: bold; }}
.outcome.RolledBack, .outcome.Aborted {{ color: #c92a2a; font-weight: bold; }}
.legend {{ list-style: none; padding: 0; columns: 2; font-size: 0.9rem; }}
.swatch {{ display: inline-block; width: 2.2rem; margin-right: 0.5rem;
  vertical-align: middle; }}
.figure svg {{ max-width: 100%; height: auto; }}
li.rollback, li.abort {{ color: #c92a2a; }}
li.promotion {{ color: #2b8a3e; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Window: {window} (UTC).</p>
<h2>Rollouts</h2>
<table class="summary">
<thead><tr><th>revision</th><th>version</th><th>outcome</th><th>reason</th>
<th>started</th><th>finished</th><th>took</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<h2>Decisions</h2>
<ul class="decisions">
{decisions}
</ul>
<p>Steps: {steps}.</p>
<h2>Timeline</h2>
<div class="figure">
{svg}
</div>
<h2>Legend</h2>
<ul class="legend">
{legend}
</ul>
</body>
</html>
"""
