"""``modelcanary report`` draws the last scrape, read from a real Prometheus.

A rollback's failing value is often seen by exactly one scrape: the pass that
measured it also rolled back. A user who runs the report right away must see
it. The prometheus-api-client rounds a range's ends to whole seconds and
Prometheus evaluates from the start in steps, so the last point could fall
before that scrape (a CI run drew 0.03 where the operator had failed on 0.2).
Here an exporter stands in for the operator's ``/metrics`` with the same
series names, and each new value must be on the report's last point as soon as
Prometheus has it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from e2e.harness import PrometheusServer, ScrapeTarget
from e2e.harness.kubernetes import wait_for
from modelcanary.cli.report import fetch_series
from modelcanary.cli.timeline import Window

pytestmark = pytest.mark.integration

NAMESPACE, NAME = "report-ns", "fraud-detector"
LOOKS = 6


@pytest.fixture
def operator_metrics(prometheus: PrometheusServer) -> Iterator[Gauge]:
    registry = CollectorRegistry()
    value = Gauge(
        "modelcanary_analysis_value",
        "A metric's latest value per revision role.",
        ["namespace", "name", "metric", "revision_role"],
        registry=registry,
    )
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer)
    address = f"127.0.0.1:{server.server_port}"
    prometheus.add_target(ScrapeTarget("report-series", address, {}))
    try:
        yield value
    finally:
        prometheus.remove_target("report-series")
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_last_scrape_is_on_the_last_point(
    prometheus: PrometheusServer, operator_metrics: Gauge
) -> None:
    candidate = operator_metrics.labels(NAMESPACE, NAME, "error-rate", "candidate")
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    query = f'modelcanary_analysis_value{{namespace="{NAMESPACE}",revision_role="candidate"}}'

    def in_prometheus(expected: float) -> bool:
        result = prometheus.api("/api/v1/query", {"query": query})["result"]
        return bool(result) and float(result[0]["value"][1]) == expected

    drawn = []
    for look in range(LOOKS):
        # Several looks, each at another phase of the scrape against the second:
        # a grid counted from the start misses about every other one.
        value = 0.2 + look / 100
        candidate.set(value)
        wait_for(
            lambda v=value: in_prometheus(v), timeout=15, interval=0.01, what=f"{value} scraped"
        )
        window = Window(began, datetime.now(UTC))
        _, values = fetch_series(prometheus.url, NAMESPACE, NAME, window, 1)
        points = values[("error-rate", "candidate")]
        drawn.append(points[-1][1])
        assert points[-1][0] == pytest.approx(window.end.timestamp(), abs=0.001)
    assert drawn == [0.2 + look / 100 for look in range(LOOKS)]
