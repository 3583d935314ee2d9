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
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from modelcanary.api.base import parse_duration
from modelcanary.cli import common
from modelcanary.cli.report.page import render_html
from modelcanary.cli.report.picture import render_png, render_svg
from modelcanary.cli.report.shared import (
    INSTALL_HINT,
    MissingExtra,
    ReportError,
    matplotlib_or_hint,
    when,
)
from modelcanary.cli.timeline import (
    CANDIDATE,
    STABLE,
    Point,
    Timeline,
    Window,
    WindowError,
    build_timeline,
    choose_window,
    default_step,
)

__all__ = [
    "INSTALL_HINT",
    "MissingExtra",
    "ReportError",
    "add_parser",
    "fetch_series",
    "render_html",
    "render_png",
    "render_svg",
    "run",
    "selector",
    "write",
]

FORMATS: Final = (".html", ".svg", ".png")
QUERY_TIMEOUT_SECONDS: Final = 30.0
SCRAPE_HINT: Final = (
    "Prometheus must scrape the operator's /metrics for the report: with the Helm chart, "
    "--set monitoring.serviceMonitor.enabled=true (and metrics.service.enabled=true), "
    "or a scrape job for the operator's metrics port (8000)"
)

WEIGHT_QUERY: Final = "max(modelcanary_canary_weight_percent{SELECTOR})"
VALUES_QUERY: Final = "max by (metric, revision_role) (modelcanary_analysis_value{SELECTOR})"

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
        matplotlib_or_hint()
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
                f"{namespace}/{args.name} between {when(window.start)} and "
                f"{when(window.end)}. {SCRAPE_HINT}"
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
