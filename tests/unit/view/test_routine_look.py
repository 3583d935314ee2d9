"""A pass that only records an analysis look is decided on the view: no re-read.

A pass that would act reads the API server again before it acts (watches of
different kinds are not ordered with each other). A look that finds the
canary as it was changes nothing but ``status.analysis``: re-reading the
Deployments, the Service, the drills and the autoscalers for it was five of
the six requests every look of every canary cost (bench-scale, 100 canaries).
A look that changes anything else, or that acts, still reads again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from modelcanary.reconcile import Reconciler
from modelcanary.view.store import DEPLOYMENT, KINDS, Store
from modelcanary.view.watch import View
from tests.unit.metrics.test_batching import FakePrometheus
from tests.unit.pass_world import (
    MD_PATH,
    NEW,
    NOW,
    OLD,
    A,
    B,
    Cluster,
    FakeRouter,
    available_deployment,
    serving,
)

pytestmark = pytest.mark.unit

ANALYSIS = {
    "interval": "10s",
    "prometheus": {"address": "http://prometheus:9090"},
    "metrics": [{"name": "latency", "query": 'latency{revision="{{revision}}"}', "max": 1.0}],
}


def canary_world(values: dict[str, float]) -> tuple[Cluster, Reconciler, FakePrometheus]:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.model_deployment(OLD, serving(A, OLD))
    body = cluster.kube.get(MD_PATH)
    body["spec"]["predictor"] = NEW
    body["spec"]["analysis"] = ANALYSIS
    body["spec"]["strategy"] = {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}
    body["metadata"]["generation"] = 2
    cluster.kube.put(MD_PATH, body)
    cluster.deployment(A)
    cluster.deployment(B)
    store = Store()
    for kind in KINDS:
        ready = [available_deployment(A), available_deployment(B)]
        store.replace(kind, ready if kind is DEPLOYMENT else [], listed_at="1")
    prometheus = FakePrometheus(values)

    async def provider(*_: Any, **__: Any) -> FakePrometheus:
        return prometheus

    reconciler = Reconciler(
        cluster.api,
        routers=lambda *_, **__: cluster.router,
        prometheus=provider,  # type: ignore[arg-type]
        view=View(cluster.api, store),
    )
    return cluster, reconciler, prometheus


def run(reconciler: Reconciler, cluster: Cluster, seconds: float) -> Any:
    obj = cluster.kube.get(MD_PATH)
    return asyncio.run(reconciler.run_pass(obj, now=NOW + timedelta(seconds=seconds)))


def paused_at_half(values: dict[str, float]) -> tuple[Cluster, Reconciler, FakePrometheus, float]:
    """Passes until the canary waits at 50% with one look recorded; the next pass's time."""
    cluster, reconciler, prometheus = canary_world(values)
    at = 0.0
    for _ in range(10):
        run(reconciler, cluster, at)
        status = cluster.status()
        if status.get("canaryWeight") == 50 and (status.get("analysis") or {}).get("lastRunAt"):
            return cluster, reconciler, prometheus, at + 11
        at += 11
    raise AssertionError(f"no look at 50%: {cluster.status()}")


def test_a_look_that_finds_the_canary_as_it_was_is_written_without_reading_again() -> None:
    cluster, reconciler, prometheus, at = paused_at_half({A: 0.2, B: 0.3})
    before = cluster.status()
    cluster.kube.requests.clear()
    prometheus.queries.clear()
    result = run(reconciler, cluster, at)
    assert prometheus.queries, "no look was due: the test would prove nothing"
    assert result.status_written
    after = cluster.status()
    assert after["analysis"]["lastRunAt"] != before["analysis"]["lastRunAt"]
    assert {k: v for k, v in after.items() if k != "analysis"} == {
        k: v for k, v in before.items() if k != "analysis"
    }
    assert [(r.method, r.path) for r in cluster.kube.requests] == [("PATCH", f"{MD_PATH}/status")]


def test_a_look_that_changes_more_than_the_analysis_still_reads_again() -> None:
    cluster, reconciler, prometheus, at = paused_at_half({A: 0.2, B: 0.3})
    prometheus.values = {A: 0.2, B: 5.0}  # the candidate breaches its bound now
    cluster.kube.requests.clear()
    result = run(reconciler, cluster, at)
    assert result.decision.events or result.decision.actions
    assert any(r.method == "GET" for r in cluster.kube.requests)
