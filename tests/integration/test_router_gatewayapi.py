"""The Gateway API router against a real API server with the Gateway API CRDs.

The routes are real HTTPRoutes, validated and defaulted by the CRD, so what
``get_weight`` reads back is what a Gateway controller would read. The owner
of everything is a ConfigMap: a real object with a real uid, so the garbage
collector (running once the full tier is up) leaves the route alone.
"""

from __future__ import annotations

import copy
import json
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
import pytest

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import (
    GatewayAPIRouter,
    Traffic,
)
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic import Router, router_for
from modelcanary.traffic.gatewayapi import (
    ANNOTATION_ORIGINAL,
    HTTPRoute,
    HTTPRouteRouter,
    _is_conflict,
)
from modelcanary.workloads.applier import read
from modelcanary.workloads.builders import OwnerRef, revision_name
from tests.kube_async import run_with_owner as run

pytestmark = pytest.mark.integration

MD = "fraud"
A, B = "aaaaaaaaaa", "bbbbbbbbbb"
T = TypeVar("T")


@pytest.fixture(scope="module")
def gateway_api(control_plane: ControlPlane) -> ControlPlane:
    control_plane.install_gateway_api()
    return control_plane


def router(
    api: kr8s.asyncio.Api,
    namespace: str,
    owner: OwnerRef,
    *,
    create: bool,
    route: str = "fraud-route",
) -> HTTPRouteRouter:
    config = GatewayAPIRouter.model_validate(
        {"httpRoute": route, "create": create, "parentRefs": [{"name": "gw", "sectionName": "web"}]}
        if create
        else {"httpRoute": route}
    )
    return HTTPRouteRouter(
        api, namespace=namespace, md_name=MD, config=config, port=8080, owner=owner
    )


async def route_body(api: kr8s.asyncio.Api, namespace: str, name: str) -> dict[str, Any]:
    body = await read(HTTPRoute, api, namespace, name)
    assert body is not None, f"HTTPRoute {name} is missing"
    return body


USER_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "user-route", "labels": {"team": "risk"}},
    "spec": {
        "parentRefs": [{"name": "public-gw"}],
        "hostnames": ["fraud.example.com"],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/predict"}}],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"add": [{"name": "X-Model", "value": "fraud"}]},
                    }
                ],
                "backendRefs": [{"name": "legacy-fraud", "port": 80, "weight": 3}],
            },
            {
                "matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
                "backendRefs": [{"name": "health", "port": 8081}],
            },
        ],
    },
}


async def create_user_route(api: kr8s.asyncio.Api, namespace: str) -> dict[str, Any]:
    manifest = copy.deepcopy(USER_ROUTE)
    manifest["metadata"]["namespace"] = namespace
    await HTTPRoute(manifest, api=api).create()
    return await route_body(api, namespace, "user-route")


# --------------------------------------------------------------------------- create mode


def test_create_mode_creates_an_owned_route_and_leaves_it_alone_when_right(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        routing = router(api, namespace, owner, create=True)
        assert await read(HTTPRoute, api, namespace, "fraud-route") is None
        await routing.ensure()
        route = await route_body(api, namespace, "fraud-route")
        assert [ref["uid"] for ref in route["metadata"]["ownerReferences"]] == [owner.uid]
        assert route["metadata"]["ownerReferences"][0]["controller"] is True
        assert route["spec"]["parentRefs"] == [
            {
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "name": "gw",
                "sectionName": "web",
            }
        ]
        assert len(route["spec"]["rules"]) == 1
        assert route["spec"]["rules"][0]["backendRefs"] == []
        assert await routing.get_weight() == RouterObservation(weights={})

        await routing.set_weight({A: 100})
        route = await route_body(api, namespace, "fraud-route")
        assert route["spec"]["rules"][0]["backendRefs"] == [
            {"group": "", "kind": "Service", "name": f"{MD}-{A}", "port": 8080, "weight": 100}
        ]
        # Our own route needs no saved original: it goes with its owner.
        assert ANNOTATION_ORIGINAL not in (route["metadata"].get("annotations") or {})

        version = route["metadata"]["resourceVersion"]
        await routing.ensure()
        await routing.set_weight({A: 100})
        await routing.finalize()
        after = await route_body(api, namespace, "fraud-route")
        assert after["metadata"]["resourceVersion"] == version

    run(gateway_api, namespace, body)


def test_create_mode_creates_the_route_with_its_weights_in_one_call(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> RouterObservation:
        await router(api, namespace, owner, create=True).set_weight({A: 90, B: 10})
        return await router(api, namespace, owner, create=True).get_weight()

    assert run(gateway_api, namespace, body) == RouterObservation(weights={A: 90, B: 10})


def test_ensure_reattaches_our_route_to_the_parents_in_the_spec(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> list[dict[str, Any]]:
        routing = router(api, namespace, owner, create=True)
        await routing.ensure()
        route = HTTPRoute({"metadata": {"name": "fraud-route", "namespace": namespace}}, api=api)
        await route.patch({"spec": {"parentRefs": [{"name": "elsewhere"}]}}, type="merge")
        await routing.ensure()
        parents: list[dict[str, Any]] = (await route_body(api, namespace, "fraud-route"))["spec"][
            "parentRefs"
        ]
        return parents

    parents = run(gateway_api, namespace, body)
    assert [(p["name"], p.get("sectionName")) for p in parents] == [("gw", "web")]


# --------------------------------------------------------------------------- a user's route


def test_a_users_route_keeps_everything_but_its_first_backends_and_gets_them_back(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        original = await create_user_route(api, namespace)
        # create: true must not take over a route that already exists.
        routing = router(api, namespace, owner, create=True, route="user-route")
        await routing.ensure()
        # It only gains the model label, so the operator's label-selected watch sees it.
        labelled = await route_body(api, namespace, "user-route")
        assert labelled["metadata"]["labels"] == {"team": "risk", "modelcanary.io/model": MD}
        assert labelled["spec"] == original["spec"]
        assert "ownerReferences" not in labelled["metadata"]

        await routing.set_weight({A: 90, B: 10})
        changed = await route_body(api, namespace, "user-route")
        assert "ownerReferences" not in changed["metadata"]
        assert changed["metadata"]["labels"] == {"team": "risk", "modelcanary.io/model": MD}
        saved = json.loads(changed["metadata"]["annotations"][ANNOTATION_ORIGINAL])
        assert saved == original["spec"]["rules"][0]["backendRefs"]
        first, second = changed["spec"]["rules"]
        assert first["matches"] == original["spec"]["rules"][0]["matches"]
        assert first["filters"] == original["spec"]["rules"][0]["filters"]
        assert [(b["name"], b["weight"]) for b in first["backendRefs"]] == [
            (revision_name(MD, A), 90),
            (revision_name(MD, B), 10),
        ]
        assert second == original["spec"]["rules"][1]
        assert changed["spec"]["hostnames"] == ["fraud.example.com"]
        assert changed["spec"]["parentRefs"] == original["spec"]["parentRefs"]

        # A second change must not save our own backends as "the original".
        await routing.set_weight({B: 100})
        again = await route_body(api, namespace, "user-route")
        assert json.loads(again["metadata"]["annotations"][ANNOTATION_ORIGINAL]) == saved

        await routing.finalize()
        restored = await route_body(api, namespace, "user-route")
        assert restored["spec"] == original["spec"]
        assert restored["metadata"]["labels"] == original["metadata"]["labels"]
        assert ANNOTATION_ORIGINAL not in (restored["metadata"].get("annotations") or {})
        # Finalizing twice changes nothing more.
        await routing.finalize()
        assert (await route_body(api, namespace, "user-route"))["metadata"][
            "resourceVersion"
        ] == restored["metadata"]["resourceVersion"]

    run(gateway_api, namespace, body)


@pytest.mark.parametrize(
    "weights",
    [{A: 0, B: 100}, {A: 100, B: 0}, {A: 90, B: 10}, {A: 50, B: 50}, {A: 1, B: 99}],
    ids=["0-100", "100-0", "90-10", "50-50", "1-99"],
)
def test_set_then_get_returns_the_same_weights(
    gateway_api: ControlPlane, namespace: str, weights: dict[str, int]
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> tuple[RouterObservation, int]:
        await create_user_route(api, namespace)
        routing = router(api, namespace, owner, create=False, route="user-route")
        await routing.set_weight({A: 50, B: 50})
        await routing.set_weight(weights)
        route = await route_body(api, namespace, "user-route")
        return await routing.get_weight(), len(route["spec"]["rules"][0]["backendRefs"])

    observed, backends = run(gateway_api, namespace, body)
    assert observed == RouterObservation(weights={r: w for r, w in weights.items() if w})
    # Revisions at 0% are left out of the route, not kept at weight 0.
    assert backends == sum(1 for w in weights.values() if w)


def test_a_weight_edited_by_hand_shows_up_as_drift(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> list[RouterObservation]:
        await create_user_route(api, namespace)
        routing = router(api, namespace, owner, create=False, route="user-route")
        await routing.set_weight({A: 90, B: 10})
        route = HTTPRoute({"metadata": {"name": "user-route", "namespace": namespace}}, api=api)
        seen = [await routing.get_weight()]
        await route.patch(
            [{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 30}],
            type="json",
        )
        seen.append(await routing.get_weight())
        await route.patch(
            [
                {
                    "op": "add",
                    "path": "/spec/rules/0/backendRefs/-",
                    "value": {"name": "someone-else", "port": 80, "weight": 30},
                }
            ],
            type="json",
        )
        seen.append(await routing.get_weight())
        # The rollout repairs drift with one more set_weight.
        await routing.set_weight({A: 90, B: 10})
        seen.append(await routing.get_weight())
        return seen

    before, edited, foreign, repaired = run(gateway_api, namespace, body)
    assert before.weights == {A: 90, B: 10}
    assert edited.weights == {A: 75, B: 25}  # 90 : 30
    assert foreign.weights == {A: 60, B: 20}  # 90 : 30 : 30, the rest is not ours
    assert repaired.weights == {A: 90, B: 10}


def test_a_missing_route_is_reported_not_invented(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> RouterObservation:
        routing = router(api, namespace, owner, create=False, route="nowhere")
        await routing.ensure()
        await routing.finalize()
        with pytest.raises(kr8s.NotFoundError):
            await routing.set_weight({A: 100})
        assert await read(HTTPRoute, api, namespace, "nowhere") is None
        return await routing.get_weight()

    observed = run(gateway_api, namespace, body)
    assert observed.weights is None
    assert observed.error is not None
    assert "nowhere" in observed.error


def test_weights_that_do_not_sum_to_100_are_refused_before_any_call(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        routing = router(api, namespace, owner, create=True)
        with pytest.raises(ValueError, match="sum to 100"):
            await routing.set_weight({A: 60, B: 60})
        assert await read(HTTPRoute, api, namespace, "fraud-route") is None

    run(gateway_api, namespace, body)


def test_a_patch_from_a_stale_read_is_refused_and_set_weight_rereads(
    gateway_api: ControlPlane, namespace: str
) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> RouterObservation:
        await create_user_route(api, namespace)
        routing = router(api, namespace, owner, create=False, route="user-route")
        stale = await route_body(api, namespace, "user-route")
        route = HTTPRoute({"metadata": {"name": "user-route", "namespace": namespace}}, api=api)
        await route.patch({"metadata": {"labels": {"edited": "by-hand"}}}, type="merge")
        with pytest.raises(kr8s.ServerError) as refused:
            await routing._patch(stale, routing._weight_ops(stale, routing.backend_refs({A: 100})))
        assert _is_conflict(refused.value), refused.value.status
        await routing.set_weight({A: 100})
        labels = (await route_body(api, namespace, "user-route"))["metadata"]["labels"]
        assert labels["edited"] == "by-hand"
        return await routing.get_weight()

    assert run(gateway_api, namespace, body).weights == {A: 100}


def test_router_for_picks_the_gateway_api_router(gateway_api: ControlPlane, namespace: str) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> Router:
        traffic = Traffic.model_validate({"port": 9000, "gatewayAPI": {"httpRoute": "r"}})
        return router_for(
            api, namespace=namespace, md_name=MD, traffic=traffic, owner=owner, replicas_total=3
        )

    chosen = run(gateway_api, namespace, body)
    assert isinstance(chosen, HTTPRouteRouter)
    assert chosen.port == 9000
    assert chosen.route_name == "r"


class StaleFirstRead(HTTPRouteRouter):
    """Reads the route as it was before someone else's edit, once: a lost race."""

    stale: dict[str, Any] | None = None
    reads = 0

    async def _read(self) -> dict[str, Any] | None:
        self.reads += 1
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return await super()._read()


def test_set_weight_retries_after_losing_a_race(gateway_api: ControlPlane, namespace: str) -> None:
    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> tuple[int, dict[str, Any]]:
        await create_user_route(api, namespace)
        base = router(api, namespace, owner, create=False, route="user-route")
        racing = StaleFirstRead(
            api, namespace=namespace, md_name=MD, config=base.config, port=8080, owner=owner
        )
        racing.stale = await route_body(api, namespace, "user-route")
        route = HTTPRoute({"metadata": {"name": "user-route", "namespace": namespace}}, api=api)
        await route.patch({"metadata": {"labels": {"edited": "by-hand"}}}, type="merge")
        await racing.set_weight({A: 30, B: 70})
        return racing.reads, await route_body(api, namespace, "user-route")

    reads, route = run(gateway_api, namespace, body)
    assert reads == 2  # the stale read lost, the fresh one won
    assert route["metadata"]["labels"]["edited"] == "by-hand"
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [30, 70]
    saved = json.loads(route["metadata"]["annotations"][ANNOTATION_ORIGINAL])
    assert saved == [
        {"group": "", "kind": "Service", "name": "legacy-fraud", "port": 80, "weight": 3}
    ]
