"""The model server is a real process whose metrics reflect real requests and faults.

The operator catches a bad candidate only through Prometheus, so these tests go
the whole way: requests to a ``python -m e2e.modelserver`` process, scraped by
the harness's real Prometheus with ``namespace``/``revision`` target labels,
and read back with the PromQL the operator's analyses use.
"""

from __future__ import annotations

import http.client
import itertools
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect
from prometheus_client.parser import text_string_to_metric_families

from e2e.dataplane import LoadGenerator, burst
from e2e.harness import PrometheusServer
from e2e.harness.kubernetes import processes_mentioning, wait_for
from e2e.harness.processes import StartupError
from e2e.modelserver import REVISION_HEADER, LogisticModel, ModelServerProcess
from e2e.modelserver.server import DURATION_BUCKETS, SEGMENTS

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


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(server: ModelServerProcess) -> Samples:
    """The server's own /metrics, as {(sample name, sorted labels): value}."""
    status, text = server.request("GET", "/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry ``labels`` (and any others), as sum() would."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def _body(**document: Any) -> bytes:
    return json.dumps(document).encode()


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
    assert _total(samples, "model_requests_total", code="200") == 5
    assert _total(samples, "model_requests_total", code="400") == 2
    assert _total(samples, "model_request_duration_seconds_count") == 7
    # Only answered predictions have a score.
    assert _total(samples, "model_prediction_score_count") == 5
    score_buckets = sorted(
        {
            float(dict(labels)["le"])
            for name, labels in samples
            if name == "model_prediction_score_bucket"
        }
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
            "segments": {},
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
            "segments": {},
        }
        features = [-3.0, 3.0, -3.0, -3.0]  # a logit of about -8.3: a score near 0
        status, body = broken.predict(features)
        assert status == 200
        assert body["score"] == pytest.approx(LogisticModel().score(features) + 0.5)

        samples = _scrape(broken)
        assert _total(samples, "model_requests_total", code="500") == 1
        assert _total(samples, "model_requests_total", code="200") == 1


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"error_rate": 1.5}, "out of range"),
        ({"added_latency_seconds": -1}, "out of range"),
        ({"score_shift": "high"}, "must be a number"),
        ({"error_rate": True}, "must be a number"),
        ({"typo": 0.1}, "unknown faults: typo"),
        ({"segments": {"mars": {"error_rate": 0.1}}}, "unknown segments: mars"),
        ({"segments": {"eu": {"typo": 0.1}}}, "segments.eu: unknown faults: typo"),
        ({"segments": {"eu": {"error_rate": 1.5}}}, "out of range: segments.eu.error_rate=1.5"),
        ({"segments": {"us": {"score_shift": "high"}}}, "segments.us.score_shift must be a number"),
        ({"segments": {"eu": 0.3}}, "segments.eu must be an object"),
        ({"segments": [0.3]}, "segments must be an object"),
        # All or nothing: a valid change beside an invalid one is not applied either.
        (
            {"error_rate": 0.5, "segments": {"apac": {"latency_multiplier": -1}}},
            "segments.apac.latency_multiplier=-1",
        ),
    ],
)
def test_invalid_faults_are_refused_and_change_nothing(
    server: ModelServerProcess, changes: dict[str, object], error: str
) -> None:
    server.set_faults(segments={"eu": {"error_rate": 0.2}})
    before = server.faults()
    status, body = server.request("POST", "/admin/faults", changes)
    assert status == 400
    assert error in body["error"]
    assert server.faults() == before


# ----------------------------------------------------------------------------- segments


def test_every_metric_carries_the_segment_and_known_segments_start_at_zero(
    server: ModelServerProcess,
) -> None:
    samples = _scrape(server)
    families = ("model_requests", "model_request_duration_seconds", "model_prediction_score")
    ours = {(name, labels) for name, labels in samples if name.startswith(families)}
    assert ours
    assert all("segment" in dict(labels) for _, labels in ours)
    # Before any request: zero series for every known segment, 200 and 500 alike.
    for segment in SEGMENTS:
        for code in ("200", "500"):
            assert samples[("model_requests_total", (("code", code), ("segment", segment)))] == 0
        assert samples[("model_request_duration_seconds_count", (("segment", segment),))] == 0
        assert samples[("model_prediction_score_count", (("segment", segment),))] == 0

    answered = [server.predict() for _ in range(60)]
    assert {status for status, _ in answered} == {200}
    drawn = [body["segment"] for _, body in answered]
    assert set(drawn) <= set(SEGMENTS)
    samples = _scrape(server)
    for segment in SEGMENTS:
        expected = drawn.count(segment)
        assert _total(samples, "model_requests_total", segment=segment, code="200") == expected
        assert _total(samples, "model_request_duration_seconds_count", segment=segment) == expected
        assert _total(samples, "model_prediction_score_count", segment=segment) == expected
        # Cumulative buckets: +Inf is the count.
        inf = (("le", "+Inf"), ("segment", segment))
        assert samples[("model_request_duration_seconds_bucket", inf)] == expected
        assert samples[("model_prediction_score_bucket", inf)] == expected


def test_the_latency_buckets_are_fine_where_the_service_time_lies(
    server: ModelServerProcess,
) -> None:
    samples = _scrape(server)
    boundaries = sorted(
        {
            float(dict(labels)["le"])
            for name, labels in samples
            if name == "model_request_duration_seconds_bucket"
        }
    )
    assert boundaries == [*DURATION_BUCKETS, float("inf")]
    assert len(boundaries) <= 26
    # The buckets every earlier query and threshold could have named are still there.
    earlier = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0)
    assert set(earlier) <= set(boundaries)
    # Between 2 ms and 50 ms, where the base service time and its slowdowns
    # lie, no bucket is wider than a third of its lower boundary.
    fine = [b for b in boundaries if 0.002 <= b <= 0.05]
    assert all(high / low <= 1.34 for low, high in itertools.pairwise(fine))


def test_a_segment_named_in_the_body_is_answered_and_counted_as_that_segment(
    server: ModelServerProcess,
) -> None:
    for segment in SEGMENTS:
        for _ in range(3):
            status, body = server.predict(segment=segment)
            assert (status, body["segment"]) == (200, segment)
    features = [0.5, -1.0, 2.0, 0.25]
    status, revision, body = _post(server, _body(features=features, segment="apac"))
    assert (status, revision, body["segment"]) == (200, "rev-1", "apac")
    assert body["score"] == pytest.approx(LogisticModel().score(features))
    # A bad request whose segment is known is counted in it.
    assert _post(server, _body(features=[1.0], segment="eu"))[0] == 400

    samples = _scrape(server)
    assert _total(samples, "model_requests_total", code="200", segment="us") == 3
    assert _total(samples, "model_requests_total", code="200", segment="eu") == 3
    assert _total(samples, "model_requests_total", code="200", segment="apac") == 4
    assert _total(samples, "model_requests_total", code="400", segment="eu") == 1
    assert _total(samples, "model_prediction_score_count", segment="apac") == 4


@pytest.mark.parametrize(
    "body",
    [
        _body(segment="mars"),
        _body(segment="EU"),
        _body(segment=3),
        _body(features=[1.0, 2.0, 3.0, 4.0], segment="unknown"),
    ],
)
def test_an_unknown_segment_is_a_400_counted_as_unknown(
    server: ModelServerProcess, body: bytes
) -> None:
    status, revision, payload = _post(server, body)
    assert (status, revision, payload["segment"]) == (400, "rev-1", "unknown")
    assert "unknown segment" in payload["error"]
    assert "us, eu, apac" in payload["error"]
    samples = _scrape(server)
    assert samples[("model_requests_total", (("code", "400"), ("segment", "unknown")))] == 1
    assert samples[("model_request_duration_seconds_count", (("segment", "unknown"),))] == 1
    assert _total(samples, "model_requests_total", code="200") == 0


def test_a_body_that_is_not_an_object_is_counted_as_unknown(server: ModelServerProcess) -> None:
    assert _post(server, b"not json")[0] == 400
    assert _post(server, b"[1, 2, 3, 4]")[0] == 400
    samples = _scrape(server)
    assert samples[("model_requests_total", (("code", "400"), ("segment", "unknown")))] == 2


def _statuses(server: ModelServerProcess, segment: str, requests: int) -> dict[int, int]:
    counts = burst(server.url, requests, body=_body(segment=segment))
    return {status: n for (revision, status), n in counts.items() if revision == server.revision}


def test_segment_faults_set_at_start_affect_only_that_segment(tmp_path: Path) -> None:
    segment_faults = {"eu": {"error_rate": 1.0, "score_shift": 0.2}}
    with ModelServerProcess(
        tmp_path, revision="eu-broken", version="2", segment_faults=segment_faults
    ) as process:
        assert process.faults() == {
            "error_rate": 0.0,
            "added_latency_seconds": 0.0,
            "latency_multiplier": 1.0,
            "score_shift": 0.0,
            "segments": segment_faults,
        }
        assert _statuses(process, "eu", 200) == {500: 200}
        assert _statuses(process, "us", 200) == {200: 200}
        assert _statuses(process, "apac", 50) == {200: 50}
        samples = _scrape(process)
    assert _total(samples, "model_requests_total", code="500", segment="eu") == 200
    assert _total(samples, "model_requests_total", code="200", segment="eu") == 0
    assert _total(samples, "model_requests_total", code="500", segment="us") == 0
    assert _total(samples, "model_requests_total", code="200", segment="us") == 200


def test_segment_faults_changed_at_run_time_affect_only_that_segment(
    server: ModelServerProcess,
) -> None:
    assert _statuses(server, "eu", 50) == {200: 50}
    updated = server.set_faults(error_rate=0.0, segments={"eu": {"error_rate": 1.0}})
    assert updated["segments"] == {"eu": {"error_rate": 1.0}}
    assert server.faults() == updated
    assert _statuses(server, "eu", 200) == {500: 200}
    assert _statuses(server, "us", 200) == {200: 200}

    # A top-level change leaves the overrides alone; eu keeps its own error rate.
    assert server.set_faults(error_rate=1.0)["segments"] == {"eu": {"error_rate": 1.0}}
    server.set_faults(
        error_rate=0.0, segments={"eu": {"error_rate": 0.0}, "us": {"error_rate": 1.0}}
    )
    assert _statuses(server, "eu", 50) == {200: 50}
    assert _statuses(server, "us", 50) == {500: 50}

    # Replacing the overrides with none heals every segment.
    assert server.set_faults(segments={})["segments"] == {}
    assert _statuses(server, "us", 50) == {200: 50}
    samples = _scrape(server)
    assert _total(samples, "model_requests_total", code="500", segment="eu") == 200
    assert _total(samples, "model_requests_total", code="500", segment="us") == 50
    assert _total(samples, "model_requests_total", code="500", segment="apac") == 0


def test_a_server_started_with_invalid_segment_faults_says_why(tmp_path: Path) -> None:
    process = ModelServerProcess(
        tmp_path, revision="bad-flags", version="1", segment_faults={"eu": {"error_rate": 3.0}}
    )
    with pytest.raises(StartupError, match=r"segments\.eu\.error_rate=3\.0"):
        process.start(timeout=30)
    assert not process.is_running()


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
                f'sum by (code) (model_requests_total{{namespace="{namespace}",revision="rev-1"}})'
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


def _by_segment_and(
    client: PrometheusConnect, label: str, query: str
) -> dict[tuple[str, str], float]:
    return {
        (sample["metric"]["segment"], sample["metric"][label]): float(sample["value"][1])
        for sample in client.custom_query(query)
    }


def test_prometheus_counts_a_segment_fault_in_that_slice_only(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    namespace = f"ms-{secrets.token_hex(3)}"
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    with (
        ModelServerProcess(
            tmp_path, revision="eu-bad", version="2", segment_faults={"eu": {"error_rate": 1.0}}
        ) as process,
        _scraped(prometheus, namespace, process),
    ):
        assert _statuses(process, "eu", 200) == {500: 200}
        assert _statuses(process, "us", 200) == {200: 200}
        # Bodies without a segment: the server draws one, eu among them.
        drawn = burst(process.url, 200)
        assert wait_for(
            lambda: _scraped_total(client, namespace, {"eu-bad": 600.0}),
            timeout=30,
            what="all 600 requests to be scraped",
        )
        # The shape of the judge's sliced errors query: raw counters by slice.
        counts = _by_segment_and(
            client,
            "code",
            "sum by (segment, code) "
            f'(model_requests_total{{namespace="{namespace}",revision="eu-bad"}})',
        )
    drawn_eu = drawn.get(("eu-bad", 500), 0)
    assert 0 < drawn_eu < 200
    assert counts[("eu", "500")] == 200 + drawn_eu
    assert counts[("eu", "200")] == 0
    assert counts[("us", "500")] == counts[("apac", "500")] == 0
    assert counts[("us", "200")] >= 200
    assert counts[("us", "200")] + counts[("apac", "200")] == 200 + drawn[("eu-bad", 200)]


def test_a_thirty_percent_slowdown_of_one_segment_shows_in_its_bucket_counts(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    """No padding: the 2-5 ms base time, 30% slower in eu, read from bucket counts alone."""
    namespace = f"ms-{secrets.token_hex(3)}"
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    stable = ModelServerProcess(tmp_path, revision="stable", version="1")
    candidate = ModelServerProcess(
        tmp_path,
        revision="candidate",
        version="2",
        segment_faults={"eu": {"latency_multiplier": 1.3}},
    )
    with stable, candidate, _scraped(prometheus, namespace, stable, candidate):
        # Both revisions at once, one segment at a time, so that whatever else
        # the machine does slows them alike.
        with ThreadPoolExecutor(2) as pool:
            for segment in ("eu", "us"):
                statuses = pool.map(_statuses, (stable, candidate), (segment, segment), (300, 300))
                assert list(statuses) == [{200: 300}, {200: 300}]
        assert wait_for(
            lambda: _scraped_total(client, namespace, {"stable": 600.0, "candidate": 600.0}),
            timeout=30,
            what="all requests to be scraped",
        )
        # Below 4 ms: about 2/3 of a 2-5 ms base time, about 1/3 of 2.6-6.5 ms.
        below = {
            (sample["metric"]["revision"], sample["metric"]["segment"]): float(sample["value"][1])
            / 300
            for sample in client.custom_query(
                "sum by (revision, segment) (model_request_duration_seconds_bucket"
                f'{{namespace="{namespace}",le="0.004"}})'
            )
        }
    assert below[("candidate", "eu")] < below[("stable", "eu")] - 0.1
    assert abs(below[("candidate", "us")] - below[("stable", "us")]) < 0.15
