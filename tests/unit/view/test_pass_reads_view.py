"""A pass with a view reads the view, not the API server, and sees its own last write.

The real ``Reconciler`` over kr8s whose HTTP goes to ``FakeKube``, which
records every request: a Healthy ModelDeployment with nothing to do must
send none, and a pass given a stale copy of the object (kopf's watch has
not delivered our status write yet) must decide from what it wrote, not
write again from the stale copy.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.reconcile import Reconciler
from modelcanary.rollout.decision import EnsureRevision
from modelcanary.view.store import DEPLOYMENT, KINDS, Store
from modelcanary.view.watch import View
from tests.unit.pass_world import (
    MD_PATH,
    NOW,
    OLD,
    A,
    Cluster,
    FakeRouter,
    available_deployment,
    serving,
)

pytestmark = pytest.mark.unit


def with_view(cluster: Cluster, deployments: list[dict[str, Any]]) -> Reconciler:
    store = Store()
    for kind in KINDS:
        store.replace(kind, deployments if kind is DEPLOYMENT else [], listed_at="1")
    return Reconciler(
        cluster.api, routers=lambda *_, **__: cluster.router, view=View(cluster.api, store)
    )


def run(reconciler: Reconciler, obj: dict[str, Any]) -> Any:
    return asyncio.run(reconciler.run_pass(obj, now=NOW))


def test_a_healthy_model_at_rest_sends_no_request() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.model_deployment(OLD, serving(A, OLD))
    cluster.deployment(A)
    reconciler = with_view(cluster, [available_deployment(A)])
    stale = cluster.kube.get(MD_PATH)
    first = run(reconciler, stale)
    assert first.status_written  # the first pass records what it observed
    cluster.kube.requests.clear()
    # kopf's body still holds the object before that write: the pass must use
    # the API server's answer to its own write, find nothing to do, and send nothing.
    again = run(reconciler, stale)
    assert not again.decision.actions
    assert not again.status_written
    assert cluster.kube.requests == []
    # Once kopf's copy catches up, the kept answer is dropped and the same holds.
    assert not run(reconciler, cluster.kube.get(MD_PATH)).status_written
    assert cluster.kube.requests == []


def test_a_pass_that_would_act_on_the_view_decides_again_on_the_api_servers_answers() -> None:
    """The view misses the ready Deployment (its watch event is late); the API server has
    it. Deciding on the view alone would make it again; the pass reads the API server
    before it acts, and does nothing the API server's answers do not call for."""
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.model_deployment(OLD, serving(A, OLD))
    cluster.deployment(A)
    settled = with_view(cluster, [available_deployment(A)])
    run(settled, cluster.kube.get(MD_PATH))  # records what it observed once
    cluster.kube.requests.clear()

    late = with_view(cluster, [])
    result = run(late, cluster.kube.get(MD_PATH))
    assert not any(isinstance(action, EnsureRevision) for action in result.decision.actions)
    assert not result.status_written
    assert [r.method for r in cluster.kube.requests if "/deployments" in r.path] == ["GET"]
    assert not cluster.kube.writes()


def test_an_older_copy_from_kopf_never_wins_over_a_newer_one() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.model_deployment(OLD, serving(A, OLD))
    reconciler = with_view(cluster, [available_deployment(A)])
    run(reconciler, cluster.kube.get(MD_PATH))
    newer = cluster.kube.get(MD_PATH)
    newer["metadata"]["resourceVersion"] = str(int(newer["metadata"]["resourceVersion"]) + 5)
    newer["metadata"]["generation"] = 2
    assert reconciler.freshest(newer) is newer
