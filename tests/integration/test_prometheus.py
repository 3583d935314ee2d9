"""The harness's Prometheus is a real server that scrapes real targets.

A tiny exporter built with prometheus-client runs in a thread on a free
loopback port, with a registry of its own; Prometheus discovers it through a
file, scrapes it every second, and answers PromQL about it through
prometheus-api-client, the same client the operator uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_client import CollectorRegistry, Counter, start_http_server

from e2e.harness import PrometheusServer, ScrapeTarget
from e2e.harness.kubernetes import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    requests = Counter(
        "smoke_requests", "Requests served by the smoke exporter.", ["code"], registry=registry
    )
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer)
    try:
        yield f"127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_prometheus_scrapes_a_discovered_target_with_its_labels(
    prometheus: PrometheusServer, exporter: tuple[str, Counter]
) -> None:
    address, requests = exporter
    requests.labels(code="200").inc(41)
    requests.labels(code="500").inc(1)
    prometheus.add_target(
        ScrapeTarget("smoke", address, {"namespace": "smoke-ns", "revision": "abc123"})
    )
    try:
        prometheus.wait_until_scraped(address)
        client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        assert client.check_prometheus_connection()
        query = 'sum(smoke_requests_total{namespace="smoke-ns",revision="abc123"})'

        def total() -> float | None:
            result = client.custom_query(query)
            return float(result[0]["value"][1]) if result else None

        assert wait_for(lambda: total() == 42.0, timeout=20, what=query)
        by_code = client.custom_query('smoke_requests_total{revision="abc123"}')
        assert {sample["metric"]["code"]: float(sample["value"][1]) for sample in by_code} == {
            "200": 41.0,
            "500": 1.0,
        }
    finally:
        prometheus.remove_target("smoke")


def test_removed_target_is_no_longer_scraped(
    prometheus: PrometheusServer, exporter: tuple[str, Counter]
) -> None:
    address, _ = exporter
    prometheus.add_target(ScrapeTarget("leaving", address, {"revision": "gone"}))
    prometheus.wait_until_scraped(address)
    prometheus.remove_target("leaving")

    def discovered() -> bool:
        return any(t["labels"].get("instance") == address for t in prometheus.active_targets())

    assert wait_for(lambda: not discovered(), timeout=20, what="the target to be dropped")


def test_malformed_promql_is_an_error_not_an_empty_result(prometheus: PrometheusServer) -> None:
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    with pytest.raises(PrometheusApiClientException, match=r"bad_data|parse error"):
        client.custom_query("sum(rate(smoke_requests_total[1m])")


def test_query_for_an_unknown_series_is_empty(prometheus: PrometheusServer) -> None:
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    assert client.custom_query('smoke_requests_total{revision="never-existed"}') == []
