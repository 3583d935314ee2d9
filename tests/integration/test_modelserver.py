"""The model server is a real process whose metrics reflect real requests and faults.

The operator catches a bad candidate only through Prometheus, so these tests go
the whole way: requests to a ``python -m e2e.modelserver`` process, scraped by
the harness's real Prometheus with ``namespace``/``revision`` target labels,
and read back with the PromQL the operator's analyses use.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families

from e2e.dataplane import LoadGenerator, burst
from e2e.harness import PrometheusServer
from e2e.harness.kubernetes import processes_mentioning, wait_for
from e2e.modelserver import REVISION_HEADER, LogisticModel, ModelServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ModelServerProcess]:
    with ModelServerProcess(tmp_path, revision="rev-1", version="1.0.0") as process:
        yield process


def _post(server: ModelServerProcess, body: bytes) -> tuple[int, str | None, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("POST", "/predict", body=body)
        response = connection.getresponse()
        return response.status, response.getheader(REVISION_HEADER), json.loads(response.read())
    finally:
        connection.close()


def _scrape(server: ModelServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's own /metrics, as {(sample name, sorted labels): value}."""
    status, text = server.request("GET", "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# ----------------------------------------------------------------------------- the process


def test_predict_scores_features_with_the_model_and_names_the_revision(
    server: ModelServerProcess,
) -> None:
    features = [0.5, -1.0, 2.0, 0.25]
    status, revision, body = _post(server, json.dumps({"features": features}).encode())
    assert (status, revision) == (200, "rev-1")
    assert body["revision"] == "rev-1"
    assert body["version"] == "1.0.0"
    assert body["score"] == pytest.approx(LogisticModel().score(features))
    assert 0.5 < body["score"] < 1.0  # a positive logit for these features

    # Without features the server draws its own, different each time.
    drawn = {_post(server, b"")[2]["score"] for _ in range(5)}
    assert len(drawn) == 5
    assert all(0.0 <= score <= 1.0 for score in drawn)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"features": [1, 2]}', "expected 4 features"),
        (b'{"features": [1, "x", 3, 4]}', "finite numbers"),
        (b"not json", "not JSON"),
        (b"[1, 2, 3, 4]", "JSON object"),
    ],
)
def test_a_bad_request_is_a_400_that_still_names_the_revision(
    server: ModelServerProcess, body: bytes, error: str
) -> None:
    status, revision, payload = _post(server, body)
    assert (status, revision) == (400, "rev-1")
    assert error in str(payload["error"])


def test_metrics_count_every_prediction_by_status_code(server: ModelServerProcess) -> None:
    for _ in range(5):
        assert server.predict()[0] == 200
    for _ in range(2):
        assert server.predict([1.0])[0] == 400
    server.faults()  # admin and probe requests are not predictions
    samples = _scrape(server)
    assert samples[("model_requests_total", (("code", "200"),))] == 5
    assert samples[("model_requests_total", (("code", "400"),))] == 2
    assert samples[("model_request_duration_seconds_count", ())] == 7
    # Only answered predictions have a score.
    assert samples[("model_prediction_score_count", ())] == 5
    score_buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in samples
        if name == "model_prediction_score_bucket"
    )
    assert score_buckets == [pytest.approx(i / 10) for i in range(11)] + [float("inf")]
    # Prometheus adds namespace and revision as target labels; the server must not.
    assert not [
        labels for _, labels in samples if any(k in ("namespace", "revision") for k, _ in labels)
    ]


def test_faults_are_set_by_flag_and_changed_at_run_time(tmp_path: Path) -> None:
    with ModelServerProcess(tmp_path, revision="broken", version="2.0.0", error_rate=1.0) as broken:
        assert broken.faults() == {
            "error_rate": 1.0,
            "added_latency_seconds": 0.0,
            "latency_multiplier": 1.0,
            "score_shift": 0.0,
        }
        status, body = broken.predict()
        assert (status, body["revision"]) == (500, "broken")

        # A partial update leaves the other faults alone.
        updated = broken.set_faults(error_rate=0.0, score_shift=0.5)
        assert updated == {
            "error_rate": 0.0,
            "added_latency_seconds": 0.0,
            "latency_multiplier": 1.0,
            "score_shift": 0.5,
        }
        features = [-3.0, 3.0, -3.0, -3.0]  # a logit of about -8.3: a score near 0
        status, body = broken.predict(features)
        assert status == 200
        assert body["score"] == pytest.approx(LogisticModel().score(features) + 0.5)

        samples = _scrape(broken)
        assert samples[("model_requests_total", (("code", "500"),))] == 1
        assert samples[("model_requests_total", (("code", "200"),))] == 1


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"error_rate": 1.5}, "out of range"),
        ({"added_latency_seconds": -1}, "out of range"),
        ({"score_shift": "high"}, "must be a number"),
        ({"error_rate": True}, "must be a number"),
        ({"typo": 0.1}, "unknown faults: typo"),
    ],
)
def test_invalid_faults_are_refused_and_change_nothing(
    server: ModelServerProcess, changes: dict[str, object], error: str
) -> None:
    before = server.faults()
    status, body = server.request("POST", "/admin/faults", changes)
    assert status == 400
    assert error in body["error"]
    assert server.faults() == before


def test_a_stopped_model_server_leaves_no_process(tmp_path: Path) -> None:
    revision = f"leaving-{secrets.token_hex(4)}"
    process = ModelServerProcess(tmp_path, revision=revision, version="1").start()
    assert processes_mentioning(revision)
    process.stop()
    assert not process.is_running()
    assert processes_mentioning(revision) == []
    with pytest.raises(ConnectionRefusedError):
        process.predict()


# ----------------------------------------------------------------------------- through Prometheus


@contextmanager
def _scraped(
    prometheus: PrometheusServer, namespace: str, *servers: ModelServerProcess
) -> Iterator[None]:
    # Prometheus passes discovered targets on in batches every few seconds, so
    # all targets are declared first and only then waited for.
    targets = [server.scrape_target(namespace) for server in servers]
    for target in targets:
        prometheus.add_target(target)
    try:
        for server in servers:
            prometheus.wait_until_scraped(server.address, timeout=60)
        yield
    finally:
        for target in targets:
            prometheus.remove_target(target.name)


def _by_revision(client: PrometheusConnect, query: str) -> dict[str, float]:
    return {
        sample["metric"].get("revision", ""): float(sample["value"][1])
        for sample in client.custom_query(query)
    }


def _scraped_total(client: PrometheusConnect, namespace: str, expected: dict[str, float]) -> bool:
    """True once Prometheus has scraped every request sent so far (no more in flight)."""
    query = f'sum by (revision) (model_requests_total{{namespace="{namespace}"}})'
    return _by_revision(client, query) == expected


def test_prometheus_sees_the_request_rate_per_revision(
    prometheus: PrometheusServer, server: ModelServerProcess
) -> None:
    namespace = f"ms-{secrets.token_hex(3)}"
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    with _scraped(prometheus, namespace, server), LoadGenerator(server.url, 40) as load:
        query = (
            f'sum by (revision) (rate(model_requests_total{{namespace="{namespace}",'
            f'revision="rev-1",code="200"}}[5s]))'
        )

        def rate() -> float:
            return _by_revision(client, query).get("rev-1", 0.0)

        # The paced 40 requests per second, give or take scrape timing.
        assert wait_for(lambda: 30 <= rate() <= 50, timeout=60, what=f"{query} near 40")
    assert load.transport_errors() == 0
    assert set(load.counts()) == {("rev-1", 200)}


def test_an_injected_error_rate_shows_in_the_500s(
    prometheus: PrometheusServer, server: ModelServerProcess
) -> None:
    namespace = f"ms-{secrets.token_hex(3)}"
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    with _scraped(prometheus, namespace, server):
        assert burst(server.url, 100) == {("rev-1", 200): 100}
        server.set_faults(error_rate=0.25)
        seen = burst(server.url, 400)
        assert set(seen) == {("rev-1", 200), ("rev-1", 500)}
        assert wait_for(
            lambda: _scraped_total(client, namespace, {"rev-1": 500.0}),
            timeout=30,
            what="all 500 requests to be scraped",
        )
        by_code = {
            sample["metric"]["code"]: float(sample["value"][1])
            for sample in client.custom_query(
                f'model_requests_total{{namespace="{namespace}",revision="rev-1"}}'
            )
        }
    # Prometheus counts exactly what the client saw...
    assert by_code == {"200": 100.0 + seen[("rev-1", 200)], "500": float(seen[("rev-1", 500)])}
    # ...and the injected quarter of the last 400 (binomial sd ~0.022).
    assert 0.17 <= by_code["500"] / 400 <= 0.33


def test_latency_and_score_faults_show_in_the_histograms(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    namespace = f"ms-{secrets.token_hex(3)}"
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    servers = {
        "stable": ModelServerProcess(tmp_path, revision="stable", version="1"),
        "slow": ModelServerProcess(
            tmp_path, revision="slow", version="2", added_latency_seconds=0.05
        ),
        "sluggish": ModelServerProcess(
            tmp_path, revision="sluggish", version="2", latency_multiplier=20.0
        ),
        "drifted": ModelServerProcess(tmp_path, revision="drifted", version="2", score_shift=0.3),
    }
    try:
        for process in servers.values():
            process.start()
        with _scraped(prometheus, namespace, *servers.values()):
            for process in servers.values():
                assert burst(process.url, 120, concurrency=6) == {(process.revision, 200): 120}
            assert wait_for(
                lambda: _scraped_total(client, namespace, dict.fromkeys(servers, 120.0)),
                timeout=30,
                what="every request to be scraped",
            )
            p90 = _by_revision(
                client,
                "histogram_quantile(0.9, sum by (le, revision) "
                f'(model_request_duration_seconds_bucket{{namespace="{namespace}"}}))',
            )
            mean_score = _by_revision(
                client,
                f'sum by (revision) (model_prediction_score_sum{{namespace="{namespace}"}}) / '
                f'sum by (revision) (model_prediction_score_count{{namespace="{namespace}"}})',
            )
    finally:
        for process in servers.values():
            process.stop()

    # The base service time is a few milliseconds; 50 ms added, or 20 times the
    # base (40-100 ms), stands clear of it.
    assert p90["stable"] < 0.04
    assert p90["drifted"] < 0.04
    assert p90["slow"] >= 0.05
    assert p90["sluggish"] >= 0.05
    # The fixed model centres its scores a little below 0.5; a +0.3 shift moves
    # the mean up by less than 0.3 only because scores are clipped at 1.
    assert 0.35 < mean_score["stable"] < 0.6
    assert 0.15 < mean_score["drifted"] - mean_score["stable"] <= 0.3
