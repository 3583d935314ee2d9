"""Each revision's HorizontalPodAutoscaler against the real API server.

No controllers run on this tier, so nothing but the applier writes: what is
checked is exactly what the operator sends. The API server defaults an HPA's
metrics and behavior; applying the same HPA again must still write nothing,
and a Deployment an HPA scales must keep the count the HPA gave it.
"""

from __future__ import annotations

from typing import Any

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Deployment, HorizontalPodAutoscaler

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import Predictor
from modelcanary.workloads import applier
from modelcanary.workloads.applier import read
from modelcanary.workloads.builders import (
    LABEL_ROLE,
    OwnerRef,
    Role,
    build_autoscaler_spec,
    build_deployment_spec,
    build_service_spec,
    revision_name,
)
from tests.kube_async import run_with_owner as run

pytestmark = pytest.mark.integration

MD = "fraud"
PODS_70 = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "inflight_requests"},
        "target": {"type": "AverageValue", "averageValue": "70"},
    },
}


def predictor(**autoscaling: Any) -> Predictor:
    return Predictor.model_validate(
        {
            "model": {"name": "fraud", "version": "1.0.0", "uri": "s3://models/fraud/1.0.0"},
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "server", "image": "m:1"}]}},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 10, **autoscaling},
        }
    )


def manifests(
    owner: OwnerRef,
    namespace: str,
    pred: Predictor,
    *,
    minimum: int,
    replicas: int = 2,
    role: Role = "canary",
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    common: dict[str, Any] = {
        "md_name": MD,
        "namespace": namespace,
        "revision": pred.revision(),
        "predictor": pred,
        "role": role,
        "owner": owner,
    }
    return (
        build_deployment_spec(replicas=replicas, port=8080, **common),
        build_service_spec(port=8080, **common),
        build_autoscaler_spec(min_replicas=minimum, **common),
    )


async def apply(
    api: kr8s.asyncio.Api,
    built: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    *,
    manage_replicas: bool = False,
) -> applier.Applied:
    deployment, service, hpa = built
    return await applier.apply_revision(
        api, deployment, service, manage_replicas=manage_replicas, manifest_autoscaler=hpa
    )


def test_an_autoscaled_revision_gets_its_hpa_and_a_second_apply_writes_nothing(
    control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor(metrics=[PODS_70])
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        built = manifests(owner, namespace, pred, minimum=3)
        first = await apply(api, built, manage_replicas=True)
        assert first.autoscaler == "created"
        hpa = await read(HorizontalPodAutoscaler, api, namespace, name)
        assert hpa is not None
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
        assert hpa["spec"]["metrics"] == [PODS_70]
        assert hpa["metadata"]["ownerReferences"][0]["uid"] == owner.uid
        again = await apply(api, built)
        assert again == applier.Applied("unchanged", "unchanged", "unchanged")
        seen = (await applier.observe_revisions(api, namespace, MD))[pred.revision()]
        assert seen.autoscaler_min_replicas == 3

    run(control_plane, namespace, body)


def test_the_hpas_replica_count_is_kept_while_its_floor_and_role_change(
    control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await apply(api, manifests(owner, namespace, pred, minimum=2), manage_replicas=True)
        # The HPA controller scales through the scale subresource.
        deployment = Deployment({"metadata": {"name": name, "namespace": namespace}}, api=api)
        await deployment.patch({"spec": {"replicas": 7}}, subresource="scale", type="merge")
        raised = await apply(api, manifests(owner, namespace, pred, minimum=5, role="stable"))
        assert raised.autoscaler == "patched"
        assert raised.deployment == "patched"  # the role label only
        live = await read(Deployment, api, namespace, name)
        hpa = await read(HorizontalPodAutoscaler, api, namespace, name)
        assert live is not None
        assert hpa is not None
        assert live["spec"]["replicas"] == 7
        assert live["metadata"]["labels"][LABEL_ROLE] == "stable"
        assert hpa["metadata"]["labels"][LABEL_ROLE] == "stable"
        assert hpa["spec"]["minReplicas"] == 5

    run(control_plane, namespace, body)


def test_changed_metrics_replace_the_hpas_spec_and_dropped_ones_return_to_the_default(
    control_plane: ControlPlane, namespace: str
) -> None:
    with_metrics = predictor(metrics=[PODS_70])
    without = predictor()
    # Two predictors, two revisions: build the second HPA under the first's name,
    # as if the same revision's autoscaling had changed.
    name = revision_name(MD, with_metrics.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        built = manifests(owner, namespace, with_metrics, minimum=2)
        await apply(api, built, manage_replicas=True)
        other = manifests(owner, namespace, without, minimum=2)[2]
        other["metadata"]["name"] = name
        other["metadata"]["labels"] = built[2]["metadata"]["labels"]
        other["spec"]["scaleTargetRef"]["name"] = name
        assert await applier.apply_autoscaler(api, other) == "patched"
        hpa = await read(HorizontalPodAutoscaler, api, namespace, name)
        assert hpa is not None
        assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]  # 80% CPU
        assert await applier.apply_autoscaler(api, other) == "unchanged"

    run(control_plane, namespace, body)


def test_a_retired_revisions_hpa_is_deleted_and_delete_revision_removes_it_too(
    control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await apply(api, manifests(owner, namespace, pred, minimum=2), manage_replicas=True)
        assert await applier.delete_autoscaler(api, namespace, name) is True
        assert await applier.delete_autoscaler(api, namespace, name) is False
        seen = (await applier.observe_revisions(api, namespace, MD))[pred.revision()]
        assert seen.autoscaler_min_replicas is None
        await apply(api, manifests(owner, namespace, pred, minimum=2))
        assert await applier.delete_revision(api, namespace, name) is True
        assert await read(HorizontalPodAutoscaler, api, namespace, name) is None

    run(control_plane, namespace, body)
