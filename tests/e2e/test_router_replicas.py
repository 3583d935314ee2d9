"""The replicas router on the full tier: weights become ready pods behind one Service.

Two revisions' Deployments are built with the real builders and applied with
the real applier, as the operator does with the replicas router (which owns
the replica counts). A weight is confirmed only when the pods that carry it
are ready, and the shared Service's endpoints really include both revisions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Deployment, Service, new_class

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import (
    Predictor,
    Traffic,
)
from modelcanary.api.names import LABEL_MODEL
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic import router_for
from modelcanary.traffic.replicas import ReplicasRouter, effective_weight
from modelcanary.workloads import applier
from modelcanary.workloads.applier import read
from modelcanary.workloads.builders import (
    LABEL_REVISION,
    OwnerRef,
    Role,
    build_deployment_spec,
    build_service_spec,
    revision_name,
)
from tests.kube_async import eventually as _eventually
from tests.kube_async import run_with_owner as run

pytestmark = pytest.mark.e2e

MD = "fraud"
TOTAL = 4
READY_TIMEOUT = 180.0


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, what: str, within: float = READY_TIMEOUT
) -> T:
    return await _eventually(check, what=what, within=within)


T = TypeVar("T")
EndpointSlice = new_class("EndpointSlice.discovery.k8s.io/v1", namespaced=True)


def predictor(version: str) -> Predictor:
    return Predictor.model_validate(
        {
            "model": {"name": "fraud", "version": version, "uri": f"s3://models/fraud/{version}"},
            "replicas": TOTAL,
            "template": {
                "spec": {"containers": [{"name": "server", "image": "example.invalid/m:1"}]}
            },
        }
    )


STABLE, CANARY = predictor("1.0.0"), predictor("1.1.0")


async def apply(
    api: kr8s.asyncio.Api, namespace: str, owner: OwnerRef, pred: Predictor, role: Role
) -> None:
    common: dict[str, Any] = {
        "md_name": MD,
        "namespace": namespace,
        "revision": pred.revision(),
        "predictor": pred,
        "role": role,
        "port": 8080,
        "owner": owner,
    }
    # As the operator does with this router: created at 0, then the router scales.
    await applier.apply_revision(
        api,
        build_deployment_spec(replicas=0, **common),
        build_service_spec(**common),
        manage_replicas=False,
    )


def router(api: kr8s.asyncio.Api, namespace: str, owner: OwnerRef) -> ReplicasRouter:
    chosen = router_for(
        api,
        namespace=namespace,
        md_name=MD,
        traffic=Traffic.model_validate({"port": 8080, "replicas": {}}),
        owner=owner,
        replicas_total=TOTAL,
    )
    assert isinstance(chosen, ReplicasRouter)
    return chosen


async def reads(routing: ReplicasRouter, weights: dict[str, int]) -> RouterObservation:
    async def check() -> RouterObservation | None:
        seen = await routing.get_weight()
        return seen if seen.weights == weights else None

    return await eventually(check, what=f"the router to read back {weights}")


async def replicas(api: kr8s.asyncio.Api, namespace: str) -> dict[str, int]:
    return {
        pred.revision(): int(
            (await read(Deployment, api, namespace, revision_name(MD, pred.revision())) or {})[
                "spec"
            ]["replicas"]
        )
        for pred in (STABLE, CANARY)
    }


async def ready_endpoints(api: kr8s.asyncio.Api, namespace: str, service: str) -> set[str]:
    """Names of the pods behind ``service`` that its EndpointSlices mark ready."""
    pods: set[str] = set()
    async for found in api.get(
        EndpointSlice,
        namespace=namespace,
        label_selector={"kubernetes.io/service-name": service},
        raw=True,
    ):
        assert isinstance(found, dict)
        for endpoint in found.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") and endpoint.get("targetRef"):
                pods.add(str(endpoint["targetRef"]["name"]))
    return pods


def test_weights_become_ready_replicas_behind_one_service(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    stable, canary = STABLE.revision(), CANARY.revision()

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await apply(api, namespace, owner, STABLE, "stable")
        await apply(api, namespace, owner, CANARY, "canary")
        routing = router(api, namespace, owner)
        # Nothing is routed until the shared Service exists.
        missing = await routing.get_weight()
        assert missing.weights is None
        assert missing.error is not None

        await routing.set_weight({stable: 100})
        await reads(routing, {stable: 100})
        assert await replicas(api, namespace) == {stable: TOTAL, canary: 0}

        await routing.set_weight({stable: 75, canary: 25})
        assert await replicas(api, namespace) == {stable: 3, canary: 1}
        await reads(routing, {stable: 75, canary: 25})

        # The shared Service selects the model, so both revisions' pods serve it.
        service = await read(Service, api, namespace, MD)
        assert service is not None
        assert service["spec"]["selector"] == {LABEL_MODEL: MD}
        pods = {
            str(pod["metadata"]["name"]): str(pod["metadata"]["labels"][LABEL_REVISION])
            async for pod in api.get(
                "pods", namespace=namespace, label_selector={LABEL_MODEL: MD}, raw=True
            )
        }

        async def both_behind_the_service() -> set[str] | None:
            serving = await ready_endpoints(api, namespace, MD)
            return serving if {pods.get(name) for name in serving} == {stable, canary} else None

        serving = await eventually(both_behind_the_service, what="endpoints of both revisions")
        assert len(serving) == TOTAL

        # 10% of 4 replicas is still one pod: nothing changes, and it reads as 25%.
        assert effective_weight(TOTAL, 10) == 25
        await routing.set_weight({stable: 90, canary: 10})
        assert await replicas(api, namespace) == {stable: 3, canary: 1}
        assert (await routing.get_weight()).weights == {stable: 75, canary: 25}

        # Revisions left out get no pods: the canary takes everything.
        await routing.set_weight({canary: 100})
        assert await replicas(api, namespace) == {stable: 0, canary: TOTAL}
        await reads(routing, {canary: 100})

    run(full_control_plane, namespace, body)


def test_a_weight_is_not_confirmed_before_its_pods_are_ready(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    stable, canary = STABLE.revision(), CANARY.revision()

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> RouterObservation:
        await apply(api, namespace, owner, STABLE, "stable")
        routing = router(api, namespace, owner)
        await routing.set_weight({stable: 100})
        await reads(routing, {stable: 100})
        # The canary's Deployment is missing: the router refuses rather than guess.
        with pytest.raises(kr8s.NotFoundError, match=canary):
            await routing.set_weight({stable: 50, canary: 50})
        # A canary whose pods can never be scheduled never reads as taking traffic.
        await apply(api, namespace, owner, CANARY, "canary")
        canary_deployment = Deployment(
            {"metadata": {"name": revision_name(MD, canary), "namespace": namespace}}, api=api
        )
        await canary_deployment.patch(
            {"spec": {"template": {"spec": {"nodeSelector": {"no-such-node": "true"}}}}},
            type="merge",
        )
        await routing.set_weight({stable: 50, canary: 50})
        assert await replicas(api, namespace) == {stable: 2, canary: 2}

        async def settled() -> bool:
            # Stable is down to its 2 ready pods and the canary's 2 pods exist, unready.
            found = await applier.observe_revisions(api, namespace, MD)
            pending = [
                pod
                async for pod in api.get(
                    "pods", namespace=namespace, label_selector={LABEL_REVISION: canary}, raw=True
                )
            ]
            return found[stable].ready_replicas == 2 and len(pending) == 2

        await eventually(settled, what="stable at 2 ready pods and 2 canary pods pending")
        return await routing.get_weight()

    assert run(full_control_plane, namespace, body).weights == {stable: 100}


def test_a_users_shared_service_is_left_alone(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> dict[str, Any]:
        theirs = Service(
            {
                "metadata": {"name": MD, "namespace": namespace, "labels": {"team": "risk"}},
                "spec": {"selector": {"app": "fraud"}, "ports": [{"port": 80}]},
            },
            api=api,
        )
        await theirs.create()
        before = await read(Service, api, namespace, MD)
        await router(api, namespace, owner).ensure()
        after = await read(Service, api, namespace, MD)
        assert before is not None
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        return after

    assert run(full_control_plane, namespace, body)["spec"]["selector"] == {"app": "fraud"}
