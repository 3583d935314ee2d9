"""A direct view reads each object, and each model's list of a kind, once per pass.

A pass about to act reads the API server, not the watches. The replicas
router's ``ensure`` and ``get_weight`` both read the shared Service, and the
revisions and the router both list the Deployments: read twice within
milliseconds, they were a third of a new object's requests in bench-scale.
Here kr8s's HTTP goes to ``FakeKube``, which records every request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.view.store import DEPLOYMENT, SERVICE
from modelcanary.view.watch import View
from modelcanary.workloads.builders import build_shared_service_spec
from tests.unit.fake_kube import Failure, FakeKube
from tests.unit.pass_world import (
    DEPLOYMENTS,
    NS,
    OLD,
    OWNER,
    A,
    B,
    Cluster,
    FakeRouter,
    available_deployment,
    fraud_router,
)

pytestmark = pytest.mark.unit

SERVICES = f"/api/v1/namespaces/{NS}/services"


def cluster() -> FakeKube:
    kube = FakeKube()
    deployment = available_deployment(A)
    deployment["spec"]["template"] = {"metadata": {"labels": deployment["metadata"]["labels"]}}
    kube.put(f"{DEPLOYMENTS}/fraud-{A}", deployment)
    service = build_shared_service_spec(md_name="fraud", namespace=NS, port=8080, owner=OWNER)
    kube.put(f"{SERVICES}/{service['metadata']['name']}", service)
    return kube


def reads(kube: FakeKube) -> list[str]:
    return [r.path for r in kube.requests if r.method == "GET"]


def test_concurrent_and_repeated_reads_go_to_the_api_server_once() -> None:
    kube = cluster()

    async def one_pass() -> None:
        direct = View(kube.api()).direct
        first, second = await asyncio.gather(
            direct.of_model(DEPLOYMENT, NS, "fraud"), direct.of_model(DEPLOYMENT, NS, "fraud")
        )
        assert [d["metadata"]["name"] for d in first] == [f"fraud-{A}"]
        assert second == first
        assert await direct.get(SERVICE, NS, "fraud") is not None
        assert await direct.get(SERVICE, NS, "fraud") is not None

    asyncio.run(one_pass())
    assert reads(kube) == [DEPLOYMENTS, f"{SERVICES}/fraud"]
    # The next pass starts with nothing read: it asks again.
    asyncio.run(one_pass())
    assert len(reads(kube)) == 4


def test_a_failed_read_is_asked_again_not_kept() -> None:
    kube = cluster()
    kube.failures.append(Failure("GET", "/services/", 500, "etcd timeout"))

    async def one_pass() -> Any:
        direct = View(kube.api()).direct
        with pytest.raises(Exception, match="500"):
            await direct.get(SERVICE, NS, "fraud")
        kube.failures.clear()
        return await direct.get(SERVICE, NS, "fraud")

    assert asyncio.run(one_pass()) is not None
    assert len(reads(kube)) == 2


def test_what_the_pass_wrote_is_what_it_reads_next() -> None:
    kube = cluster()

    async def one_pass() -> None:
        direct = View(kube.api()).direct
        await direct.of_model(DEPLOYMENT, NS, "fraud")
        written = {**available_deployment(A, replicas=3)}
        direct.remember(DEPLOYMENT, written)
        assert await direct.get(DEPLOYMENT, NS, f"fraud-{A}") is written
        # The model's list holds it as written, in place of what was read, as a
        # LIST now would answer; and a new one is added to it.
        assert await direct.of_model(DEPLOYMENT, NS, "fraud") == [written]
        new = available_deployment(B)
        direct.remember(DEPLOYMENT, new)
        listed = await direct.of_model(DEPLOYMENT, NS, "fraud")
        assert [d["metadata"]["name"] for d in listed] == [f"fraud-{A}", f"fraud-{B}"]
        # Another model's object is not in this model's list.
        other = available_deployment(A)
        other["metadata"] = {**other["metadata"], "name": "churn-x"}
        other["metadata"]["labels"] = {"modelcanary.io/model": "churn"}
        direct.remember(DEPLOYMENT, other)
        assert len(await direct.of_model(DEPLOYMENT, NS, "fraud")) == 2

    asyncio.run(one_pass())
    assert reads(kube) == [DEPLOYMENTS]


def test_the_replicas_router_reads_the_service_and_deployments_once_a_pass() -> None:
    """ensure, get_weight and set_weight of one pass: one GET of the Service and one
    LIST of the Deployments. Before, each of the three read the Service again, and
    set_weight listed the Deployments itself (the pass's own writes are in the
    direct view's list now, so its answer holds what set_weight must see)."""
    kube = cluster()

    async def one_pass() -> None:
        router = fraud_router(kube, View(kube.api()).direct)
        await router.ensure()
        observed = await router.get_weight()
        assert observed.weights == {A: 100}
        await router.set_weight({A: 100})

    asyncio.run(one_pass())
    assert reads(kube) == [f"{SERVICES}/fraud", DEPLOYMENTS]
    assert not kube.writes()


def test_a_new_objects_first_pass_creates_its_revision_without_reading_it_first() -> None:
    """The pass has just listed the Deployments and found none of the revision:
    its Deployment and Service are created at once, not read first (404)."""
    world = Cluster(router=FakeRouter({}))
    world.model_deployment(OLD)
    world.md_pass()
    by_name = [
        r.path for r in world.kube.requests if r.method == "GET" and r.path.endswith(f"/fraud-{A}")
    ]
    assert by_name == []
    assert {r.path for r in world.kube.writes() if r.method == "POST"} >= {
        DEPLOYMENTS,
        SERVICES,
    }


def test_a_direct_view_starts_from_what_its_pass_wrote_while_observing() -> None:
    """The router's ensure creates a missing shared Service while the pass observes on
    its view; the direct view the pass then reads before acting has that answer
    already (a GET of it was one of a new object's requests). The next pass's view
    starts afresh."""
    kube = FakeKube()
    service = build_shared_service_spec(md_name="fraud", namespace=NS, port=8080, owner=OWNER)
    name = service["metadata"]["name"]

    async def one_pass(write: bool) -> Any:
        view = View(kube.api()).for_pass()
        if write:
            view.remember(SERVICE, service)
        return await view.direct.get(SERVICE, NS, name)

    assert asyncio.run(one_pass(write=True)) is service
    assert reads(kube) == []
    assert asyncio.run(one_pass(write=False)) is None  # not kept past its pass
    assert reads(kube) == [f"{SERVICES}/{name}"]
