"""Looks at a grid instant against the harness's real Prometheus (issue 15).

Canaries with one look period look at the same grid instants; the batcher asks
Prometheus at the instant (``time=``) and serves every look of one (query
shape, instant) from as few queries as is sound. The unit tests prove the
bookkeeping over fakes; this module proves, against the real Prometheus, what
the fakes take for granted: that an answer at ``time=t`` is what a direct query
at t says, whenever it is asked; that one instant's answer is not another's;
and that the looks of many canaries at one instant cost one query per shape,
counted both by a wrapped provider and by Prometheus's own request counter.

An exporter thread (prometheus-client, a registry of its own) serves counters
and a histogram for six canaries (a candidate and a stable revision each) under
a namespace label unique to this run, and bumps them ten times a second, so a
value at one instant differs from the value at the next. The instants asked are
past grid instants whose samples Prometheus has all ingested.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness import PrometheusServer, ScrapeTarget
from e2e.harness.kubernetes import wait_for
from modelcanary.analysis import queries
from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelcanary.metrics import QueryResult
from modelcanary.metrics.batching import QueryBatcher
from modelcanary.metrics.prometheus import PrometheusProvider
from modelcanary.promql.templates import TemplateValues, render
from modelcanary.reconcile import Reconciler
from modelcanary.rollout.analysis import latest_grid_instant
from tests.unit.rollout.world import make_spec

pytestmark = pytest.mark.integration

CANARIES = 6
INTERVAL = "2s"
PERIOD = timedelta(seconds=2)
SELECTOR = 'namespace="{{namespace}}",revision="{{revision}}"'
FAILED = f'sum(mc_grid_requests_total{{{SELECTOR},code=~"5.."}})'
TOTAL = f"sum(mc_grid_requests_total{{{SELECTOR}}})"
BUCKETS = f"sum by (le) (mc_grid_latency_seconds_bucket{{{SELECTOR}}})"
RATIO = (
    f'sum(rate(mc_grid_requests_total{{{SELECTOR},code=~"5.."}}[5s]))'
    f" / sum(rate(mc_grid_requests_total{{{SELECTOR}}}[5s]))"
)
SAMPLES = f"sum(increase(mc_grid_requests_total{{{SELECTOR}}}[5s]))"
SHAPES = 5
"""FAILED, TOTAL and BUCKETS for candidate and stable; RATIO and SAMPLES for the candidate."""


@dataclass(frozen=True)
class Canaries:
    """What the module's exporter serves: one (candidate, stable) pair per canary."""

    namespace: str
    pairs: tuple[tuple[str, str], ...]

    def values(self, revision: str) -> TemplateValues:
        return TemplateValues(
            namespace=self.namespace, name="grid", revision=revision, model="m", version="1"
        )


@pytest.fixture(scope="module")
def canaries(prometheus: PrometheusServer) -> Iterator[Canaries]:
    namespace = f"mc-grid-{secrets.token_hex(4)}"
    pairs = tuple((f"c{secrets.token_hex(4)}", f"s{secrets.token_hex(4)}") for _ in range(CANARIES))
    revisions = [revision for pair in pairs for revision in pair]
    registry = CollectorRegistry()
    requests = Counter("mc_grid_requests", "Requests.", ["revision", "code"], registry=registry)
    latency = Histogram(
        "mc_grid_latency_seconds",
        "Latency.",
        ["revision"],
        buckets=(0.1, 0.25, 0.5),
        registry=registry,
    )
    stop = threading.Event()

    def serve_traffic() -> None:
        while not stop.wait(0.1):
            for n, revision in enumerate(revisions):
                requests.labels(revision, "200").inc(10 + n)
                requests.labels(revision, "500").inc(1 + n % 3)
                latency.labels(revision).observe(0.05 * (1 + n % 5))

    traffic = threading.Thread(target=serve_traffic, daemon=True)
    traffic.start()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer)
    address = f"127.0.0.1:{server.server_port}"
    target = f"grid-{namespace}"
    prometheus.add_target(ScrapeTarget(target, address, {"namespace": namespace}))
    try:
        prometheus.wait_until_scraped(address)
        # The rate windows (5s) of the earliest instant asked, about 10 s ago, are full.
        first = time.time()
        assert wait_for(lambda: time.time() > first + 20, timeout=30, what="20 s of data")
        yield Canaries(namespace, pairs)
    finally:
        prometheus.remove_target(target)
        stop.set()
        traffic.join(timeout=5)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class CountingProvider:
    """The real provider, with a record of the queries sent through it and their instants."""

    inner: PrometheusProvider
    sent: list[tuple[str, datetime | None]] = field(default_factory=list)
    online_checks: int = 0

    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        self.sent.append((query, at))
        return await self.inner.query_series(query, at=at)

    async def run_query(self, query: str) -> Any:
        return (await self.query_series(query)).sample()

    async def is_online(self) -> bool:
        self.online_checks += 1
        return await self.inner.is_online()

    def at(self, instant: datetime) -> list[str]:
        return [query for query, at in self.sent if at == instant]


@pytest.fixture
def counting(prometheus: PrometheusServer) -> Iterator[CountingProvider]:
    inner = PrometheusProvider(prometheus.url, timeout=10)
    yield CountingProvider(inner)
    inner.close()


def spec() -> ModelDeploymentSpec:
    return make_spec(
        "2.0.0",
        analysis={
            "interval": INTERVAL,
            "prometheus": {"address": "http://unused:9090"},
            "metrics": [
                {"name": "errors", "errors": {"failed": FAILED, "total": TOTAL}},
                {"name": "latency", "latency": {"buckets": BUCKETS}},
                {"name": "error-ratio", "query": RATIO, "max": 0.5},
            ],
            "minSamples": {"query": SAMPLES, "value": 1},
        },
    )


def grid_instants(prometheus: PrometheusServer, canaries: Canaries) -> list[datetime]:
    """Three consecutive past instants of the look grid, every sample up to them ingested."""
    latest = latest_grid_instant(datetime.now(UTC) - 3 * PERIOD, INTERVAL)
    selector = f'mc_grid_requests_total{{namespace="{canaries.namespace}"}}'

    def ingested_past_latest() -> bool:
        result = prometheus.api("/api/v1/query", {"query": f"min(timestamp({selector}))"})
        return (
            bool(result["result"])
            and float(result["result"][0]["value"][1]) > (latest + PERIOD).timestamp()
        )

    assert wait_for(ingested_past_latest, timeout=15, what="samples scraped after the instants")
    return [latest - 2 * PERIOD, latest - PERIOD, latest]


def without_revision(series: Sequence[Any]) -> set[tuple[tuple[tuple[str, str], ...], float]]:
    return {
        (tuple(sorted((k, v) for k, v in s.labels.items() if k != "revision")), s.value)
        for s in series
    }


def direct(
    prometheus: PrometheusServer, template: str, values: TemplateValues, at: datetime
) -> set[tuple[tuple[tuple[str, str], ...], float]]:
    """The single query, asked straight over HTTP at ``at``, as a set of (labels, value)."""
    time_param = f"{at.timestamp():.3f}"
    query = render(template, values)
    answer = prometheus.api("/api/v1/query", {"query": query, "time": time_param})["result"]
    return {
        (tuple(sorted(item["metric"].items())), float(item["value"][1]))
        for item in answer
        if not math.isnan(float(item["value"][1]))
    }


def same(found: set[Any], expected: set[Any]) -> bool:
    if {labels for labels, _ in found} != {labels for labels, _ in expected}:
        return False
    by_labels = dict(expected)
    return all(math.isclose(v, by_labels[labels], rel_tol=1e-12) for labels, v in found)


def api_queries_served(prometheus: PrometheusServer) -> float:
    """Prometheus's own count of /api/v1/query requests, read from its /metrics."""
    with urllib.request.urlopen(prometheus.url + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "prometheus_http_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("handler") == "/api/v1/query"
    )


def reconciler_over(provider: CountingProvider) -> Reconciler:
    async def factory(*_: object) -> CountingProvider:
        return provider

    return Reconciler(None, prometheus=factory)  # type: ignore[arg-type]


def passes_at(
    reconciler: Reconciler, canaries: Canaries, at: datetime
) -> list[AnalysisObservation]:
    """Every canary's look at ``at``, one pass after another, as the handler makes it."""
    analysis_spec, status = spec(), ModelDeploymentStatus()

    async def one_after_another() -> list[AnalysisObservation]:
        return [
            await reconciler.looks.observe(
                canaries.namespace,
                f"grid-{n}",
                analysis_spec,
                status,
                datetime.now(UTC),
                candidate_revision=candidate,
                stable_revision=stable,
                at=at,
            )
            for n, (candidate, stable) in enumerate(canaries.pairs)
        ]

    return asyncio.run(one_after_another())


def test_many_canaries_look_at_one_instant_for_one_query_per_shape(
    prometheus: PrometheusServer, canaries: Canaries, counting: CountingProvider
) -> None:
    t0, t1, _ = grid_instants(prometheus, canaries)
    reconciler = reconciler_over(counting)
    passes_at(reconciler, canaries, t0)
    # The first instant knows no history: each pass asks for its own pair.
    assert len(counting.at(t0)) == SHAPES * CANARIES
    served_before = api_queries_served(prometheus)

    observations = passes_at(reconciler, canaries, t1)

    # The first pass at t1 asks for every revision asked at t0, one query per shape,
    # and the other five passes are served from its answers.
    assert len(counting.at(t1)) == SHAPES
    assert all('revision=~"' in query for query in counting.at(t1))
    assert counting.online_checks == 2  # one per instant, not one per pass
    # Prometheus's own count agrees: the shapes and the online check, nothing else.
    assert wait_for(
        lambda: api_queries_served(prometheus) - served_before == SHAPES + 1,
        timeout=5,
        what=f"Prometheus to count {SHAPES + 1} queries",
    )
    assert [observation.at for observation in observations] == [t1] * CANARIES
    assert all(observation.prometheus_online for observation in observations)


def test_a_look_at_an_instant_reads_what_a_direct_query_at_that_instant_reads(
    prometheus: PrometheusServer, canaries: Canaries, counting: CountingProvider
) -> None:
    t0, t1, _ = grid_instants(prometheus, canaries)
    reconciler = reconciler_over(counting)
    passes_at(reconciler, canaries, t0)
    observations = passes_at(reconciler, canaries, t1)  # mostly served from kept answers

    for observation, (candidate, stable) in zip(observations, canaries.pairs, strict=True):
        for role, revision in (("candidate", candidate), ("stable", stable)):
            values = canaries.values(revision)
            errors = getattr(observation.counts["errors"], role)
            latency = getattr(observation.counts["latency"], role)
            for template, answer in (
                (FAILED, errors["failed"]),
                (TOTAL, errors["total"]),
                (BUCKETS, latency["buckets"]),
            ):
                assert answer.error is None, answer.error
                expected = direct(prometheus, template, values, t1)
                assert expected, f"no data for {revision} at {t1}"
                assert same(without_revision(answer.series), expected), (template, revision)
        ratio = observation.metrics[0].candidate
        ((_, expected_ratio),) = direct(prometheus, RATIO, canaries.values(candidate), t1)
        assert ratio.value == pytest.approx(expected_ratio, rel=1e-12)
        assert observation.samples is not None
        ((_, expected_samples),) = direct(prometheus, SAMPLES, canaries.values(candidate), t1)
        assert observation.samples.value == pytest.approx(expected_samples, rel=1e-12)


def test_an_answer_kept_for_one_instant_is_not_served_at_the_next(
    prometheus: PrometheusServer, canaries: Canaries, counting: CountingProvider
) -> None:
    t0, t1, t2 = grid_instants(prometheus, canaries)
    reconciler = reconciler_over(counting)
    passes_at(reconciler, canaries, t0)
    at_t1 = passes_at(reconciler, canaries, t1)
    at_t2 = passes_at(reconciler, canaries, t2)

    assert len(counting.at(t2)) == SHAPES  # asked again, at t2
    for first, second, (candidate, _) in zip(at_t1, at_t2, canaries.pairs, strict=True):
        values = canaries.values(candidate)
        total_t1 = without_revision(first.counts["errors"].candidate["total"].series)
        total_t2 = without_revision(second.counts["errors"].candidate["total"].series)
        assert same(total_t1, direct(prometheus, TOTAL, values, t1))
        assert same(total_t2, direct(prometheus, TOTAL, values, t2))
        # The counter grew between the instants, so serving t1's answer at t2 would show.
        ((_, grown),), ((_, before),) = total_t2, total_t1
        assert grown > before
    # And time= is what made the difference: a query without it reads now.
    values = canaries.values(canaries.pairs[0][0])
    ((_, now),) = direct(prometheus, TOTAL, values, datetime.now(UTC))
    ((_, then),) = direct(prometheus, TOTAL, values, t2)
    assert now > then


def test_concurrent_passes_at_one_instant_share_the_queries_in_flight(
    prometheus: PrometheusServer, canaries: Canaries, counting: CountingProvider
) -> None:
    t0, t1, _ = grid_instants(prometheus, canaries)
    batcher = QueryBatcher(counting)
    analysis = spec().analysis
    assert analysis is not None

    def requests(candidate: str, stable: str) -> list[tuple[str, TemplateValues]]:
        plan = queries.plan(analysis, canaries.values(candidate), canaries.values(stable))
        return list(plan.values())

    async def passes(at: datetime, *, together: bool) -> list[list[QueryResult]]:
        runs = [batcher.run(requests(*pair), at=at) for pair in canaries.pairs]
        if together:  # every pass asks before Prometheus answers any
            return list(await asyncio.gather(*runs))
        return [await run for run in runs]

    asyncio.run(passes(t0, together=False))
    results = asyncio.run(passes(t1, together=True))

    # Without sharing the queries in flight, each of the six passes would ask.
    assert len(counting.at(t1)) == SHAPES
    for pair, answers in zip(canaries.pairs, results, strict=True):
        for (template, values), answer in zip(requests(*pair), answers, strict=True):
            assert answer.error is None, answer.error
            expected = direct(prometheus, template, values, t1)
            assert same(without_revision(answer.series), expected), (template, values.revision)
