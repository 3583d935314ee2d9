"""The Prometheus provider and the batcher against the harness's real Prometheus.

One exporter thread (prometheus-client, a registry of its own) serves counters,
a histogram and gauges for a few revisions under a namespace label unique to
this module's run, and Prometheus scrapes it every second. The data is set once
and never changes. That keeps a batched query and the single queries it
replaces, run a moment apart, looking at the same numbers, so they can be
compared for equality.

Failure modes that need a misbehaving server use small local stand-ins: a
socket that accepts connections and never answers (timeouts), a port with
nothing listening (unreachable), and an HTTP server that records headers and
either forwards to the real Prometheus (optionally over TLS) or answers with a
canned error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import kr8s
import kr8s.asyncio
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from kr8s.objects import Secret
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from e2e.harness import ControlPlane, PrometheusServer, ScrapeTarget, free_port
from e2e.harness.kubernetes import wait_for
from e2e.harness.pki import generate
from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import Sample
from modelcanary.api.analysis import (
    PrometheusConnection,
)
from modelcanary.metrics import QueryResult
from modelcanary.metrics.batching import QueryBatcher
from modelcanary.metrics.connection import ConnectionConfigError, ProviderCache, provider_for
from modelcanary.metrics.prometheus import PrometheusProvider
from modelcanary.promql.rewrite import rewrite
from modelcanary.promql.templates import TemplateValues, render

pytestmark = pytest.mark.integration

BUCKETS = (0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Data:
    """What the module's exporter serves, as Prometheus sees it."""

    namespace: str
    revisions: tuple[str, ...]
    """Three revisions with data, then one with none."""

    def values(self, revision: str) -> TemplateValues:
        return TemplateValues(
            namespace=self.namespace, name="fraud", revision=revision, model="fraud", version="1"
        )


@pytest.fixture(scope="module")
def data(prometheus: PrometheusServer) -> Iterator[Data]:
    namespace = f"mc-{secrets.token_hex(4)}"
    a, b, c, d = (f"{secrets.token_hex(5)}" for _ in range(4))
    registry = CollectorRegistry()
    requests = Counter("mc_requests", "Requests.", ["revision", "code"], registry=registry)
    latency = Histogram(
        "mc_latency_seconds", "Latency.", ["revision"], buckets=BUCKETS, registry=registry
    )
    value = Gauge("mc_value", "A gauge.", ["revision", "series"], registry=registry)
    requests.labels(a, "200").inc(90)
    requests.labels(a, "500").inc(10)
    requests.labels(b, "200").inc(50)
    requests.labels(b, "503").inc(50)
    requests.labels(c, "200").inc(100)  # c has no errors: the error ratio has no data
    for seconds in [0.05] * 10 + [0.3] * 5:
        latency.labels(a).observe(seconds)
    for seconds in [0.7] * 10 + [0.2]:
        latency.labels(b).observe(seconds)
    for seconds in [0.2] * 3:
        latency.labels(c).observe(seconds)
    value.labels(a, "x").set(1.5)
    value.labels(b, "x").set(-2.0)
    value.labels(c, "x").set(float("nan"))
    value.labels(a, "y").set(4.0)

    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer)
    address = f"127.0.0.1:{server.server_port}"
    target = f"provider-{namespace}"
    prometheus.add_target(ScrapeTarget(target, address, {"namespace": namespace}))
    try:
        prometheus.wait_until_scraped(address)

        def counted(selector: str) -> int:
            result = prometheus.api("/api/v1/query", {"query": f"count({selector})"})["result"]
            return int(result[0]["value"][1]) if result else 0

        expected = {"mc_requests_total": 5, "mc_latency_seconds_bucket": 15, "mc_value": 4}
        assert wait_for(
            lambda: all(
                counted(f'{metric}{{namespace="{namespace}"}}') == count
                for metric, count in expected.items()
            ),
            timeout=30,
            what="every test series in Prometheus",
        )
        yield Data(namespace, (a, b, c, d))
    finally:
        prometheus.remove_target(target)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def provider(prometheus: PrometheusServer) -> Iterator[PrometheusProvider]:
    provider = PrometheusProvider(prometheus.url, timeout=10)
    yield provider
    provider.close()


def query(provider: PrometheusProvider, promql: str) -> Sample:
    return asyncio.run(provider.run_query(promql))


def series(provider: PrometheusProvider, promql: str) -> QueryResult:
    return asyncio.run(provider.query_series(promql))


def online(provider: PrometheusProvider) -> bool:
    return asyncio.run(provider.is_online())


# --------------------------------------------------------------------------- outcomes


def test_a_single_series_is_its_value(provider: PrometheusProvider, data: Data) -> None:
    a = data.revisions[0]
    selector = f'mc_requests_total{{namespace="{data.namespace}",revision="{a}"}}'
    assert query(provider, f"sum({selector})") == Sample.of(100.0)
    assert query(provider, f'{selector[:-1]},code="500"}}') == Sample.of(10.0)


def test_a_scalar_is_its_value(provider: PrometheusProvider) -> None:
    assert query(provider, "3 * 7") == Sample.of(21.0)


def test_an_empty_result_is_no_data(provider: PrometheusProvider, data: Data) -> None:
    sample = query(provider, f'mc_requests_total{{namespace="{data.namespace}",revision="none"}}')
    assert sample == Sample(value=None, error=None)


@pytest.mark.parametrize("promql", ["0/0", "1/0", "-1/0"])
def test_nan_and_infinities_are_no_data(provider: PrometheusProvider, promql: str) -> None:
    assert query(provider, promql) == Sample(value=None, error=None)


def test_a_nan_series_is_no_data(provider: PrometheusProvider, data: Data) -> None:
    c = data.revisions[2]
    sample = query(provider, f'mc_value{{namespace="{data.namespace}",revision="{c}"}}')
    assert sample == Sample(value=None, error=None)


def test_several_series_are_an_error_naming_them(provider: PrometheusProvider, data: Data) -> None:
    a = data.revisions[0]
    sample = query(provider, f'mc_requests_total{{namespace="{data.namespace}",revision="{a}"}}')
    assert sample.is_error
    assert not sample.has_value
    assert "must return one series but returned 2" in (sample.error or "")
    assert 'code="200"' in (sample.error or "")
    assert 'code="500"' in (sample.error or "")


def test_bad_promql_is_an_error_with_the_parse_error(provider: PrometheusProvider) -> None:
    result = series(provider, "sum(rate(mc_requests_total[1m])")
    assert result.rejected
    assert result.error is not None
    assert result.error.startswith("Prometheus rejected the query (bad_data): ")
    assert "parse error" in result.error
    assert 'invalid parameter "query"' not in result.error
    assert query(provider, "sum(rate(mc_requests_total[1m])").is_error


def test_an_execution_error_is_a_rejected_query(provider: PrometheusProvider, data: Data) -> None:
    selector = f'mc_requests_total{{namespace="{data.namespace}"}}'
    result = series(provider, f"{selector} / on() {selector}")
    assert result.rejected
    assert "could not execute the query (execution)" in (result.error or "")
    assert "found duplicate series for the match group" in (result.error or "")


def test_a_range_vector_result_is_an_error(provider: PrometheusProvider, data: Data) -> None:
    sample = query(provider, f'mc_requests_total{{namespace="{data.namespace}"}}[1m]')
    assert sample.is_error
    assert "range vector" in (sample.error or "")


def test_a_string_result_is_an_error(provider: PrometheusProvider) -> None:
    sample = query(provider, '"hello"')
    assert sample.is_error
    assert "string 'hello'" in (sample.error or "")


def test_the_real_prometheus_is_online(provider: PrometheusProvider) -> None:
    assert online(provider)


def test_queries_run_concurrently_and_keep_their_order(provider: PrometheusProvider) -> None:
    queries = [f"vector({i})" for i in range(40)] + ["0/0", "sum(("]

    async def all_at_once() -> list[Sample]:
        return await provider.run_queries(queries)

    samples = asyncio.run(all_at_once())
    assert [s.value for s in samples[:40]] == [float(i) for i in range(40)]
    assert samples[40] == Sample.of(None)
    assert samples[41].is_error


# --------------------------------------------------------------------------- kinds of failure


@pytest.mark.parametrize(
    ("promql", "said"),
    [
        ("sum(rate(mc_requests_total[1m])", "Prometheus rejected the query (bad_data): "),
        ("rat(mc_requests_total[1m])", 'unknown function with name "rat"'),
        ("{selector}[1m]", "the query returned a range vector"),
        ('"hello"', "the query returned the string 'hello', not a number"),
        ("{selector}", "the query must return one series but returned 5"),
        ("{selector} / on() {selector}", "found duplicate series for the match group"),
    ],
    ids=["syntax", "unknown-function", "range-vector", "string", "several-series", "execution"],
)
def test_what_waiting_will_not_fix_is_an_error_quoting_prometheus(
    provider: PrometheusProvider, data: Data, promql: str, said: str
) -> None:
    selector = f'mc_requests_total{{namespace="{data.namespace}"}}'
    sample = query(provider, promql.format(selector=selector))
    assert sample.is_error
    assert sample.kind is Failure.ERROR
    assert said in (sample.error or "")


def test_a_stopped_prometheus_is_an_outage_until_it_is_back(tmp_path: Path, data: Data) -> None:
    """Prometheus of its own, stopped and started again on the same port and data."""
    own = PrometheusServer(tmp_path).start()
    try:
        provider = PrometheusProvider(own.url, timeout=2)
        assert query(provider, "vector(1)") == Sample.of(1.0)
        own.stop()
        down = query(provider, "vector(1)")
        assert down == Sample.failed(f"cannot reach Prometheus at {own.url}: connection refused")
        assert down.kind is Failure.OUTAGE
        assert not online(provider)
        own.start(port=own.port)
        assert query(provider, "vector(1)") == Sample.of(1.0)
        # The same bad query is an error whether Prometheus just restarted or not.
        assert query(provider, "sum((").kind is Failure.ERROR
    finally:
        own.stop()


# --------------------------------------------------------------------------- failures


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP port whose connections are accepted by the kernel and never answered."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_server_that_never_answers_times_out_with_an_error() -> None:
    with silent_server() as url:
        provider = PrometheusProvider(url, timeout=0.5)
        started = time.monotonic()
        sample = query(provider, "up")
        elapsed = time.monotonic() - started
        assert sample.is_error
        assert sample.kind is Failure.OUTAGE
        assert sample.error == f"Prometheus at {url} did not answer within 0.5s"
        assert elapsed < 3
        assert not online(provider)


def test_a_query_waiting_on_the_network_does_not_block_the_event_loop() -> None:
    with silent_server() as url:
        provider = PrometheusProvider(url, timeout=1.0)

        async def query_while_ticking() -> tuple[Sample, int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            try:
                return await provider.run_query("up"), ticks
            finally:
                ticker.cancel()

        sample, ticks = asyncio.run(query_while_ticking())
        assert sample.is_error
        # About 100 ticks fit in the timeout; a blocked loop would manage none.
        assert ticks >= 20


def test_an_unreachable_prometheus_is_an_error_and_offline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    provider = PrometheusProvider(url, timeout=2)
    sample = query(provider, "up")
    assert sample == Sample.failed(f"cannot reach Prometheus at {url}: connection refused")
    assert sample.kind is Failure.OUTAGE
    assert not online(provider)


def test_an_unresolvable_host_is_an_error() -> None:
    provider = PrometheusProvider("http://prometheus.invalid:9090", timeout=5)
    sample = query(provider, "up")
    assert sample.is_error
    assert "does not resolve" in (sample.error or "")


@dataclass
class HttpStub:
    url: str
    headers: list[dict[str, str]] = field(default_factory=list)


class _StubServer(ThreadingHTTPServer):
    upstream: str | None
    canned: tuple[int, bytes] | None
    stub: HttpStub


class _StubHandler(BaseHTTPRequestHandler):
    server: _StubServer

    def do_GET(self) -> None:
        self.server.stub.headers.append(dict(self.headers.items()))
        if self.server.canned is not None:
            status, body = self.server.canned
        else:
            assert self.server.upstream is not None
            try:
                with urllib.request.urlopen(self.server.upstream + self.path, timeout=10) as up:  # noqa: S310
                    status, body = up.status, up.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@contextmanager
def http_stub(
    *,
    upstream: str | None = None,
    canned: tuple[int, bytes] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[HttpStub]:
    """An HTTP(S) server on loopback that records request headers, then either
    forwards to ``upstream`` or answers ``canned`` (status, body)."""
    server = _StubServer(("127.0.0.1", 0), _StubHandler)
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    stub = HttpStub(f"{scheme}://127.0.0.1:{server.server_address[1]}")
    server.upstream, server.canned, server.stub = upstream, canned, stub
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"upstream connect error", "answered HTTP 503: upstream connect error"),
        (502, b"", "answered HTTP 502"),
        (401, b"no token", "refused the request (HTTP 401)"),
        (404, b"404 page not found", "/api/v1/query does not exist (HTTP 404)"),
        (
            503,
            json.dumps(
                {"status": "error", "errorType": "timeout", "error": "query timed out"}
            ).encode(),
            "Prometheus timed out evaluating the query: query timed out",
        ),
    ],
)
def test_http_errors_are_errors_with_the_status_and_no_retries(
    status: int, body: bytes, reason: str
) -> None:
    with http_stub(canned=(status, body)) as stub:
        provider = PrometheusProvider(stub.url, timeout=5)
        sample = query(provider, "up")
        assert sample.is_error
        assert sample.kind is Failure.OUTAGE  # a proxy, a token, a restart: not the query
        assert reason in (sample.error or "")
        assert not series(provider, "up").rejected
        # One request per query: the client's default retries on 5xx are off.
        assert len(stub.headers) == 2


def test_an_answer_that_is_not_json_is_an_error() -> None:
    with http_stub(canned=(200, b"<html>login</html>")) as stub:
        sample = query(PrometheusProvider(stub.url, timeout=5), "up")
    assert sample.is_error
    assert sample.kind is Failure.OUTAGE  # a login page in front of it, not the query
    assert "not JSON" in (sample.error or "")


def test_headers_are_sent_with_every_query(prometheus: PrometheusServer) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Scope-OrgID": "team-a"}
    with http_stub(upstream=prometheus.url) as stub:
        provider = PrometheusProvider(stub.url, timeout=5, headers=headers)
        assert query(provider, "vector(5)") == Sample.of(5.0)
        assert online(provider)
    assert len(stub.headers) == 2
    for seen in stub.headers:
        assert seen["Authorization"] == "Bearer s3cret"
        assert seen["X-Scope-OrgID"] == "team-a"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1, and its CA bundle."""
    pki = generate(tmp_path_factory.mktemp("pki"), {})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.serving.cert, pki.serving.key)
    return context, pki.ca.cert


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_against_the_given_ca_bundle(
    prometheus: PrometheusServer, tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca = tls
    with http_stub(upstream=prometheus.url, tls=context) as stub:
        assert query(PrometheusProvider(stub.url, verify=str(ca)), "vector(2)") == Sample.of(2.0)
        assert query(PrometheusProvider(stub.url, verify=False), "vector(3)") == Sample.of(3.0)
        unknown_ca = query(PrometheusProvider(stub.url, verify=True), "vector(4)")
        assert unknown_ca.is_error
        assert unknown_ca.error is not None
        assert unknown_ca.error.startswith(f"TLS with Prometheus at {stub.url} failed: ")
        assert "certificate" in unknown_ca.error


# --------------------------------------------------------------------------- escaping


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(min_size=1, max_size=40))
def test_prometheus_reads_back_every_rendered_value_exactly(
    provider: PrometheusProvider, value: str
) -> None:
    # absent() answers with the labels of its selector's equality matchers, so
    # Prometheus's own parser tells us what the rendered matcher says.
    template = 'absent(modelcanary_no_such_metric{l="{{name}}"})'
    values = TemplateValues(namespace="n", name=value, revision="r", model="m", version="v")
    result = series(provider, render(template, values))
    assert result.error is None, result.error
    assert [dict(s.labels) for s in result.series] == [{"l": value}]


# --------------------------------------------------------------------------- batching


ERROR_RATIO = (
    'sum(mc_requests_total{namespace="{{namespace}}",revision="{{revision}}",code=~"5.."})'
    ' / sum(mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"})'
)
P90 = (
    "histogram_quantile(0.9, sum by (le) "
    '(mc_latency_seconds_bucket{namespace="{{namespace}}",revision="{{revision}}"}))'
)
COUNT = 'count(mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"})'
GAUGE = 'max_over_time(mc_value{namespace="{{namespace}}",revision="{{revision}}",series="x"}[1m])'
PER_CODE = 'sum by (code) (mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"})'


class CountingProvider:
    """The real provider, with a record of the queries sent through it."""

    def __init__(self, inner: PrometheusProvider) -> None:
        self.inner = inner
        self.queries: list[str] = []

    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        self.queries.append(query)
        return await self.inner.query_series(query, at=at)

    async def run_query(self, query: str) -> Sample:
        return (await self.query_series(query)).sample()

    async def is_online(self) -> bool:
        return await self.inner.is_online()


def batched_and_single_results(
    provider: PrometheusProvider, data: Data, templates: Sequence[str]
) -> tuple[list[QueryResult], list[QueryResult], list[str]]:
    """Every template for every revision, through the batcher and one query at a time."""
    requests = [(t, data.values(r)) for t in templates for r in data.revisions]
    counting = CountingProvider(provider)

    async def both() -> tuple[list[QueryResult], list[QueryResult]]:
        batched = await QueryBatcher(counting).run(requests)
        single = await asyncio.gather(*(provider.query_series(render(t, v)) for t, v in requests))
        return batched, list(single)

    batched, single = asyncio.run(both())
    return batched, single, counting.queries


def batched_and_single(
    provider: PrometheusProvider, data: Data, templates: Sequence[str]
) -> tuple[list[Sample], list[Sample], list[str]]:
    """The same, read as one number per request, as the analysis reads them."""
    batched, single, sent = batched_and_single_results(provider, data, templates)
    return [r.sample() for r in batched], [r.sample() for r in single], sent


def same(batched: Sample, single: Sample) -> bool:
    if batched.has_value and single.has_value:
        assert batched.value is not None
        assert single.value is not None
        return math.isclose(batched.value, single.value, rel_tol=1e-12, abs_tol=1e-12)
    return batched.has_value == single.has_value and batched.is_error == single.is_error


def test_batched_results_equal_single_results(provider: PrometheusProvider, data: Data) -> None:
    templates = [ERROR_RATIO, P90, COUNT, GAUGE, PER_CODE]
    batched, single, sent = batched_and_single(provider, data, templates)

    assert [same(b, s) for b, s in zip(batched, single, strict=True)] == [True] * len(single)
    # One query per template for all four revisions: every one of them batched.
    assert len(sent) == len(templates)
    assert all('revision=~"' in query for query in sent)

    by_template = {t: batched[i * 4 : i * 4 + 4] for i, t in enumerate(templates)}
    # The numbers are the revisions' own, not each other's.
    assert [s.value for s in by_template[ERROR_RATIO]] == [0.1, 0.5, None, None]
    # Linear interpolation within the bucket that holds the 90th percentile.
    assert [s.value for s in by_template[P90]] == [
        pytest.approx(0.25 + 0.25 * 3.5 / 5),
        pytest.approx(0.5 + 0.5 * 8.9 / 10),
        pytest.approx(0.1 + 0.15 * 2.7 / 3),
        None,
    ]
    assert [s.value for s in by_template[COUNT]] == [2.0, 2.0, 1.0, None]
    assert [s.value for s in by_template[GAUGE]] == [1.5, -2.0, None, None]
    per_code = by_template[PER_CODE]
    assert [s.is_error for s in per_code] == [True, True, False, False]
    assert per_code[2] == Sample.of(100.0)


def test_every_series_of_a_batched_answer_is_the_single_answers_plus_the_revision(
    provider: PrometheusProvider, data: Data
) -> None:
    # sum by (le) becomes sum by (le, revision): each revision gets back all of
    # its buckets, with their le, and Prometheus's revision label besides.
    buckets = (
        'sum by (le) (mc_latency_seconds_bucket{namespace="{{namespace}}",revision="{{revision}}"})'
    )
    batched, single, sent = batched_and_single_results(provider, data, [buckets, PER_CODE])
    assert len(sent) == 2
    assert all("revision=~" in query for query in sent)

    def as_set(result: QueryResult, revision: str | None) -> set[tuple[tuple[str, str], ...]]:
        assert result.error is None, result.error
        found = set()
        for one in result.series:
            labels = dict(one.labels)
            assert labels.pop("revision", None) == revision
            found.add((*sorted(labels.items()), ("value", repr(one.value))))
        return found

    revisions = data.revisions * 2
    for revision, b, s in zip(revisions, batched, single, strict=True):
        assert as_set(b, revision) == as_set(s, None)
    a = batched[0]
    assert sorted(s.labels["le"] for s in a.series) == sorted(
        [*(str(bound) for bound in BUCKETS), "+Inf"]
    )
    assert {s.labels["revision"] for s in a.series} == {data.revisions[0]}
    assert batched[3] == QueryResult()  # the revision without data
    assert sorted(s.labels["code"] for s in batched[4].series) == ["200", "500"]


def test_a_batch_prometheus_rejects_falls_back_to_the_single_queries(
    provider: PrometheusProvider, data: Data
) -> None:
    # Ignoring the code, revisions a and b have two series per match group on
    # each side, which Prometheus refuses, and that fails the whole batch. Revision c
    # has one series per side and succeeds on its own.
    template = (
        'mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"}'
        ' / ignoring(code) mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"}'
    )
    assert rewrite(template).batched is not None
    batched, single, sent = batched_and_single(provider, data, [template])
    assert [same(b, s) for b, s in zip(batched, single, strict=True)] == [True] * 4
    assert batched[2] == Sample.of(1.0)
    assert batched[0].is_error
    assert len(sent) == 1 + 4  # the rejected batch, then each revision singly


_SELECTORS = {
    "requests": 'mc_requests_total{namespace="{{namespace}}",revision="{{revision}}"}',
    "errors": 'mc_requests_total{namespace="{{namespace}}",revision="{{revision}}",code=~"5.."}',
    "value": 'mc_value{namespace="{{namespace}}",revision="{{revision}}"}',
    "buckets": 'mc_latency_seconds_bucket{namespace="{{namespace}}",revision="{{revision}}"}',
}


def _vectors() -> st.SearchStrategy[str]:
    """Small PromQL expressions over the module's data, built from the shapes the
    rewrite has rules for: groupings with and without the revision, vector matching
    with on/ignoring, and set operators. Set operators never fail on duplicates, so
    they are what exposes a wrong match."""
    leaves = st.sampled_from(list(_SELECTORS.values())) | st.builds(
        "max_over_time({}[30s])".format, st.sampled_from(list(_SELECTORS.values()))
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        grouping = st.sampled_from(
            [
                "",
                " by (code)",
                " by (le)",
                " by ()",
                " without (instance, job)",
                " by (revision)",
                " by (code, revision)",
            ]
        )
        aggregation = st.builds(
            "{}{} ({})".format,
            st.sampled_from(["sum", "avg", "min", "max", "count"]),
            grouping,
            inner,
        )
        matching = st.sampled_from(["", " on()", " on(code)", " ignoring(code)"])
        operator = st.sampled_from(["/", "+", "> bool", "and", "or", "unless"])
        binary = st.builds("({}) {}{} ({})".format, inner, operator, matching, inner)
        scaled = st.builds("({}) * {}".format, inner, st.sampled_from(["2", "-0.5"]))
        quantile = st.builds("histogram_quantile(0.5, {})".format, inner)
        return aggregation | binary | binary | scaled | quantile

    return st.recursive(leaves, extend, max_leaves=3)


_R, _E = _SELECTORS["requests"], _SELECTORS["errors"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=_vectors())
# Shapes where a missing revision in on() gives a wrong answer instead of an
# error: set operators never complain about duplicates, and revision c has
# requests but no errors.
@example(template=f"({_R}) and on() ({_E})")
@example(template=f"(sum({_R})) unless on() (sum({_E}))")
@example(template=f"(sum by (code) ({_E})) or on() (sum by (code) ({_R}))")
def test_any_template_the_rewrite_accepts_batches_to_the_single_answers(
    provider: PrometheusProvider, data: Data, template: str
) -> None:
    assume(rewrite(template).batched is not None)
    batched, single, _ = batched_and_single(provider, data, [template])
    assert [same(b, s) for b, s in zip(batched, single, strict=True)] == [True] * 4, (
        template,
        batched,
        single,
    )


# --------------------------------------------------------------------------- Secrets


def make_secret(k8s: kr8s.Api, namespace: str, name: str, data: dict[str, bytes]) -> None:
    encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
    Secret({"metadata": {"name": name, "namespace": namespace}, "data": encoded}, api=k8s).create()


def connection(address: str, **extra: object) -> PrometheusConnection:
    return PrometheusConnection.model_validate({"address": address, "timeout": "5s", **extra})


def test_headers_and_the_ca_bundle_come_from_secrets(
    control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    prometheus: PrometheusServer,
    tls: tuple[ssl.SSLContext, Path],
) -> None:
    context, ca = tls
    make_secret(
        k8s,
        namespace,
        "prometheus-auth",
        {"token": b"Bearer t0ken\n", "tenant": b"team-a", "ca.crt": ca.read_bytes()},
    )
    make_secret(k8s, namespace, "rotated", {"token": b"Bearer n3w"})
    cache = ProviderCache()

    def spec(address: str, source: str = "prometheus-auth") -> PrometheusConnection:
        return connection(
            address,
            headers=[
                {"name": "Authorization", "secretKeyRef": {"name": source, "key": "token"}},
                {
                    "name": "X-Scope-OrgID",
                    "secretKeyRef": {"name": "prometheus-auth", "key": "tenant"},
                },
            ],
            caSecretRef={"name": "prometheus-auth", "key": "ca.crt"},
        )

    with http_stub(upstream=prometheus.url, tls=context) as stub:

        async def scenario() -> tuple[Sample, bool, bool]:
            api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
            provider = await provider_for(api, spec(stub.url), namespace, cache=cache)
            again = await provider_for(api, spec(stub.url), namespace, cache=cache)
            rotated = await provider_for(api, spec(stub.url, "rotated"), namespace, cache=cache)
            sample = await provider.run_query("vector(9)")
            await rotated.run_query("vector(1)")
            return sample, again is provider, rotated is not provider

        sample, shared, separate = asyncio.run(scenario())

    assert sample == Sample.of(9.0)
    assert shared, "equal settings must share one provider"
    assert separate, "a different token must get its own provider"
    assert len(cache) == 2
    # The trailing newline of the stored token is not sent.
    assert [h["Authorization"] for h in stub.headers] == ["Bearer t0ken", "Bearer n3w"]
    assert stub.headers[0]["X-Scope-OrgID"] == "team-a"


def _header_from(name: str, key: str) -> dict[str, object]:
    return {"headers": [{"name": "Authorization", "secretKeyRef": {"name": name, "key": key}}]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_header_from("missing", "token"), "Secret {ns}/missing does not exist"),
        (
            _header_from("present", "nokey"),
            "Secret {ns}/present has no key 'nokey' (it has: ca.crt, split, token)",
        ),
        (
            _header_from("present", "split"),
            "key 'split' of Secret {ns}/present (header Authorization) holds characters other "
            "than printable ASCII",
        ),
        (
            {"caSecretRef": {"name": "present", "key": "token"}},
            "key 'token' of Secret {ns}/present is not a PEM CA bundle",
        ),
        (
            {"caSecretRef": {"name": "absent-ca", "key": "ca.crt"}},
            "Secret {ns}/absent-ca does not exist",
        ),
    ],
)
def test_a_missing_secret_or_key_is_a_clear_error(
    control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    extra: dict[str, object],
    message: str,
) -> None:
    make_secret(
        k8s,
        namespace,
        "present",
        {"token": b"t", "split": b"Bearer a\nX-Injected: 1", "ca.crt": b"not a certificate"},
    )
    spec = connection("https://prometheus.invalid:9090", **extra)

    async def build() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
        await provider_for(api, spec, namespace, cache=ProviderCache())

    with pytest.raises(ConnectionConfigError) as raised:
        asyncio.run(build())
    assert str(raised.value) == message.format(ns=namespace)
