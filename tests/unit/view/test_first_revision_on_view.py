"""Before its first revision serves, a ModelDeployment's passes act on the view.

A pass that would act reads the API server again first (watches of different
kinds are not ordered with each other). For a new ModelDeployment, whose first
revision goes straight to 100%, that re-read was four of the eighteen requests
every new object cost (bench-scale, N=200), and nothing it guards is at stake:
nothing is served yet and no drill runs without a stable revision. What a view
behind the API server can make such a pass do is idempotent (a create answered
409 falls back to a read and a patch) or a wait for the next watch event. From
the first stable revision on, a pass that acts reads again, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.reconcile import Reconciler
from modelcanary.view.store import DEPLOYMENT, KINDS, Store
from modelcanary.view.watch import View
from tests.unit.pass_world import (
    DEPLOYMENTS,
    MD_PATH,
    NEW,
    NOW,
    NS,
    OLD,
    A,
    B,
    Cluster,
    FakeRouter,
    available_deployment,
    serving,
)

pytestmark = pytest.mark.unit


def on_a_view(cluster: Cluster, deployments: list[dict[str, Any]]) -> tuple[Reconciler, Store]:
    store = Store()
    for kind in KINDS:
        store.replace(kind, deployments if kind is DEPLOYMENT else [], listed_at="1")
    reconciler = Reconciler(
        cluster.api, routers=lambda *_, **__: cluster.router, view=View(cluster.api, store)
    )
    return reconciler, store


def run(reconciler: Reconciler, cluster: Cluster) -> Any:
    return asyncio.run(reconciler.run_pass(cluster.kube.get(MD_PATH), now=NOW))


def reads(cluster: Cluster) -> list[str]:
    return [r.path for r in cluster.kube.requests if r.method == "GET"]


def test_a_new_model_deployment_reaches_healthy_without_reading_the_api_server() -> None:
    cluster = Cluster(router=FakeRouter())
    cluster.model_deployment(OLD)
    reconciler, store = on_a_view(cluster, [])
    cluster.kube.requests.clear()

    first = run(reconciler, cluster)
    assert first.failed is None
    assert reads(cluster) == []
    assert ("POST", DEPLOYMENTS) in {(r.method, r.path) for r in cluster.kube.requests}
    assert cluster.status()["phase"] == "Progressing"

    # The Deployment becomes Available; its watch event puts it in the view.
    path = f"{DEPLOYMENTS}/fraud-{A}"
    deployment = cluster.kube.get(path)
    deployment["status"] = available_deployment(A)["status"]
    cluster.kube.put(path, deployment)
    store.upsert(DEPLOYMENT, cluster.kube.get(path))
    cluster.kube.requests.clear()
    routed = run(reconciler, cluster)  # routes 100% to it ...
    assert routed.failed is None
    assert cluster.router.weights == {A: 100}
    promoted = run(reconciler, cluster)  # ... and, the router confirming it, promotes it
    assert promoted.failed is None
    assert reads(cluster) == []
    status = cluster.status()
    assert (status["phase"], status["stableRevision"]) == ("Healthy", A)
    assert cluster.router.weights == {A: 100}


def test_a_deployment_the_view_has_not_seen_is_patched_after_the_409() -> None:
    cluster = Cluster(router=FakeRouter())
    cluster.model_deployment(OLD)
    # On the API server (a pass that created it and crashed before its status
    # write); the view has not seen it yet.
    existing = available_deployment(A, replicas=5)
    existing["spec"]["selector"] = {"matchLabels": existing["metadata"]["labels"]}
    cluster.kube.put(f"{DEPLOYMENTS}/fraud-{A}", existing)
    reconciler, _ = on_a_view(cluster, [])
    result = run(reconciler, cluster)
    assert result.failed is None
    sent = [(r.method, r.path) for r in cluster.kube.requests]
    assert ("POST", DEPLOYMENTS) in sent  # created without a read: the view said missing
    assert ("PATCH", f"{DEPLOYMENTS}/fraud-{A}") in sent  # and patched after the 409
    assert cluster.kube.get(f"{DEPLOYMENTS}/fraud-{A}")["spec"]["replicas"] == 1


def test_once_a_revision_is_stable_a_pass_that_acts_reads_again() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.model_deployment(NEW, serving(A, OLD))
    cluster.deployment(A)
    reconciler, _ = on_a_view(cluster, [available_deployment(A)])
    cluster.kube.requests.clear()
    result = run(reconciler, cluster)
    assert result.decision.actions, "the canary of B did not start: the test proves nothing"
    assert any(B in str(a) for a in result.decision.actions)
    assert DEPLOYMENTS in reads(cluster)


def test_with_the_replicas_router_a_new_object_costs_its_creates_and_its_status() -> None:
    """The replicas router's ``set_weight`` lists the Deployments and scales them; for
    a new object, it now lists the view (with the pass's own create in it) and finds
    the Deployment created at its full count: no LIST, no scale PATCH. The shared
    Service is created without a read first (``test_shared_service``)."""
    cluster = Cluster()
    cluster.model_deployment({**OLD, "replicas": 3})
    body = cluster.kube.get(MD_PATH)
    body["spec"]["traffic"] = {"port": 8080, "replicas": {"service": "fraud"}}
    cluster.kube.put(MD_PATH, body)
    store = Store()
    for kind in KINDS:
        store.replace(kind, [], listed_at="1")
    reconciler = Reconciler(cluster.api, view=View(cluster.api, store))  # the real router
    cluster.kube.requests.clear()
    result = run(reconciler, cluster)
    assert result.failed is None
    sent = [
        (r.method, r.path.removeprefix(f"/api/v1/namespaces/{NS}")) for r in cluster.kube.requests
    ]
    assert ("POST", DEPLOYMENTS) in sent
    assert not [s for s in sent if s[0] == "PATCH" and "/deployments/" in s[1]], sent
    assert not [s for s in sent if s[0] == "GET" and s[1].startswith(DEPLOYMENTS)], sent
    # Nor a read of the shared Service: the synced view does not hold it, so it is created.
    assert not [s for s in sent if s[0] == "GET"], sent
    (deployment,) = [
        obj for path, obj in cluster.kube.objects.items() if path.startswith(f"{DEPLOYMENTS}/")
    ]
    assert deployment["spec"]["replicas"] == 3
