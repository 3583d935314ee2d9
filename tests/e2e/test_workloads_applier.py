"""The workload applier on the full tier: Deployments really roll out on kwok nodes.

What is checked is what the rollout relies on: a revision becomes Available
and is reported so by one LIST; applying the same manifests again writes
nothing; a role or replica change never starts a new ReplicaSet; scaling to 0
and back works; nothing the applier does deletes anything but
``delete_revision``. Everything is owned by a real ConfigMap, because the
garbage collector runs on this tier and removes objects whose owner is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import ConfigMap, Deployment, Pod, ReplicaSet, Service

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import (
    Predictor,
)
from modelcanary.rollout.observations import RevisionObservation
from modelcanary.workloads import applier
from modelcanary.workloads.applier import Applied, read
from modelcanary.workloads.builders import (
    LABEL_REVISION,
    LABEL_ROLE,
    OwnerRef,
    Role,
    build_deployment_spec,
    build_service_spec,
    revision_name,
)
from modelcanary.workloads.patches import NotOurs
from tests.kube_async import eventually as _eventually
from tests.kube_async import run_with_owner as run

pytestmark = pytest.mark.e2e

MD = "fraud"
READY_TIMEOUT = 180.0


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, what: str, within: float = READY_TIMEOUT
) -> T:
    return await _eventually(check, what=what, within=within)


T = TypeVar("T")


def predictor(version: str = "1.0.0") -> Predictor:
    return Predictor.model_validate(
        {
            "model": {"name": "fraud", "version": version, "uri": f"s3://models/fraud/{version}"},
            "replicas": 2,
            "template": {
                # kwok plays the kubelet: the image is never pulled.
                "spec": {"containers": [{"name": "server", "image": "example.invalid/m:1"}]}
            },
        }
    )


def manifests(
    owner: OwnerRef,
    namespace: str,
    pred: Predictor,
    *,
    role: Role = "stable",
    replicas: int = 2,
    md_name: str = MD,
) -> tuple[dict[str, Any], dict[str, Any]]:
    common: dict[str, Any] = {
        "md_name": md_name,
        "namespace": namespace,
        "revision": pred.revision(),
        "predictor": pred,
        "role": role,
        "port": 8080,
        "owner": owner,
    }
    return build_deployment_spec(replicas=replicas, **common), build_service_spec(**common)


async def available(
    api: kr8s.asyncio.Api, namespace: str, revision: str, replicas: int
) -> RevisionObservation:
    async def check() -> RevisionObservation | None:
        seen = (await applier.observe_revisions(api, namespace, MD)).get(revision)
        if seen is not None and seen.available and seen.ready_replicas == replicas:
            return seen
        return None

    return await eventually(check, what=f"revision {revision} Available with {replicas} ready")


async def body_of(
    api: kr8s.asyncio.Api, kind: type[Any], namespace: str, name: str
) -> dict[str, Any]:
    found = await read(kind, api, namespace, name)
    assert found is not None, f"{kind.__name__} {name} is missing"
    return found


async def replica_sets(api: kr8s.asyncio.Api, namespace: str, revision: str) -> list[str]:
    """The pod-template-hash of every ReplicaSet of a revision."""
    found = [
        item
        async for item in api.get(
            ReplicaSet, namespace=namespace, label_selector={LABEL_REVISION: revision}, raw=True
        )
    ]
    return sorted(str(rs["metadata"]["labels"]["pod-template-hash"]) for rs in found)


async def pod_uids(api: kr8s.asyncio.Api, namespace: str, revision: str) -> set[str]:
    return {
        str(pod["metadata"]["uid"])
        async for pod in api.get(
            Pod, namespace=namespace, label_selector={LABEL_REVISION: revision}, raw=True
        )
    }


# --------------------------------------------------------------------------- tests


def test_an_applied_revision_becomes_available_and_is_observed(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    revision = pred.revision()

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        deployment, service = manifests(owner, namespace, pred)
        assert await applier.observe_revisions(api, namespace, MD) == {}
        applied = await applier.apply_revision(api, deployment, service)
        assert applied == Applied(deployment="created", service="created")
        seen = await available(api, namespace, revision, 2)
        assert seen == RevisionObservation(
            revision=revision, exists=True, desired_replicas=2, ready_replicas=2, available=True
        )
        svc = await body_of(api, Service, namespace, revision_name(MD, revision))
        assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert svc["spec"]["clusterIP"]
        # Another model's revision in the same namespace is not this model's.
        other, other_service = manifests(owner, namespace, predictor("9.9.9"), md_name="other")
        await applier.apply_revision(api, other, other_service)
        assert set(await applier.observe_revisions(api, namespace, MD)) == {revision}
        assert set(await applier.observe_revisions(api, namespace, "other")) == {
            predictor("9.9.9").revision()
        }

    run(full_control_plane, namespace, body)


def test_applying_the_same_revision_twice_writes_nothing(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        deployment, service = manifests(owner, namespace, pred)
        await applier.apply_revision(api, deployment, service)
        await available(api, namespace, pred.revision(), 2)

        async def settled() -> dict[str, Any] | None:
            # The controller writes Progressing=NewReplicaSetAvailable last; after
            # that nobody has a reason to write the Deployment again.
            found = await body_of(api, Deployment, namespace, name)
            conditions = {c["type"]: c for c in found["status"].get("conditions", [])}
            done = conditions.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable"
            return found if done else None

        before = await eventually(settled, what="the rollout to be complete")
        service_before = await body_of(api, Service, namespace, name)
        again = await applier.apply_revision(api, deployment, service)
        assert again == Applied(deployment="unchanged", service="unchanged")
        after = await body_of(api, Deployment, namespace, name)
        service_after = await body_of(api, Service, namespace, name)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert (
            service_after["metadata"]["resourceVersion"]
            == service_before["metadata"]["resourceVersion"]
        )

    run(full_control_plane, namespace, body)


def test_a_role_change_relabels_without_restarting_pods(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    revision = pred.revision()
    name = revision_name(MD, revision)

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await applier.apply_revision(api, *manifests(owner, namespace, pred, role="canary"))
        await available(api, namespace, revision, 2)
        before = await body_of(api, Deployment, namespace, name)
        hashes, pods = (
            await replica_sets(api, namespace, revision),
            await pod_uids(api, namespace, revision),
        )
        assert len(hashes) == 1

        promoted = await applier.apply_revision(
            api, *manifests(owner, namespace, pred, role="stable")
        )
        assert promoted == Applied(deployment="patched", service="patched")
        after = await body_of(api, Deployment, namespace, name)
        assert after["metadata"]["labels"][LABEL_ROLE] == "stable"
        assert (await body_of(api, Service, namespace, name))["metadata"]["labels"][
            LABEL_ROLE
        ] == "stable"
        # No spec change at all: the same generation, ReplicaSet and pods.
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"]["template"] == before["spec"]["template"]
        assert await replica_sets(api, namespace, revision) == hashes
        assert await pod_uids(api, namespace, revision) == pods

    run(full_control_plane, namespace, body)


def test_a_replica_change_scales_the_same_replica_set(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    revision = pred.revision()
    name = revision_name(MD, revision)

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await applier.apply_revision(api, *manifests(owner, namespace, pred, replicas=1))
        await available(api, namespace, revision, 1)
        hashes = await replica_sets(api, namespace, revision)
        applied = await applier.apply_revision(api, *manifests(owner, namespace, pred, replicas=3))
        assert applied == Applied(deployment="patched", service="unchanged")
        await available(api, namespace, revision, 3)
        assert await replica_sets(api, namespace, revision) == hashes
        # When the router owns the replica count, applying leaves it alone.
        kept = await applier.apply_revision(
            api, *manifests(owner, namespace, pred, replicas=0), manage_replicas=False
        )
        assert kept == Applied(deployment="unchanged", service="unchanged")
        assert (await body_of(api, Deployment, namespace, name))["spec"]["replicas"] == 3

    run(full_control_plane, namespace, body)


def test_scale_to_zero_and_back(full_control_plane: ControlPlane, namespace: str) -> None:
    pred = predictor()
    revision = pred.revision()
    name = revision_name(MD, revision)

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await applier.apply_revision(api, *manifests(owner, namespace, pred))
        await available(api, namespace, revision, 2)

        await applier.scale_revision(api, namespace, name, 0)

        async def drained() -> RevisionObservation | None:
            seen = (await applier.observe_revisions(api, namespace, MD))[revision]
            pods = await pod_uids(api, namespace, revision)
            return seen if seen.ready_replicas == 0 and not pods else None

        idle = await eventually(drained, what="the revision's pods to be gone")
        assert idle.desired_replicas == 0
        assert idle.available is False  # zero replicas serve nothing
        assert idle.exists

        await applier.scale_revision(api, namespace, name, 2)
        await available(api, namespace, revision, 2)
        with pytest.raises(kr8s.NotFoundError):
            await applier.scale_revision(api, namespace, "no-such-revision", 1)

    run(full_control_plane, namespace, body)


def test_delete_revision_removes_both_objects_once(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        await applier.apply_revision(api, *manifests(owner, namespace, pred))
        assert await applier.delete_revision(api, namespace, name) is True

        async def gone() -> bool:
            return (
                await read(Deployment, api, namespace, name) is None
                and await read(Service, api, namespace, name) is None
            )

        await eventually(gone, what="the revision's Deployment and Service to be deleted")
        assert await applier.delete_revision(api, namespace, name) is False

    run(full_control_plane, namespace, body)


def test_an_object_controlled_by_someone_else_is_not_taken_over(
    full_control_plane: ControlPlane, namespace: str
) -> None:
    pred = predictor()
    name = revision_name(MD, pred.revision())

    async def body(api: kr8s.asyncio.Api, owner: OwnerRef) -> None:
        stranger = ConfigMap({"metadata": {"name": "stranger", "namespace": namespace}}, api=api)
        await stranger.create()
        theirs = OwnerRef(
            api_version="v1", kind="ConfigMap", name="stranger", uid=stranger.metadata.uid
        )
        deployment, service = manifests(theirs, namespace, pred)
        await applier.apply_revision(api, deployment, service)
        with pytest.raises(NotOurs, match="controlled by ConfigMap stranger"):
            await applier.apply_revision(api, *manifests(owner, namespace, pred))
        after = await body_of(api, Deployment, namespace, name)
        assert [ref["uid"] for ref in after["metadata"]["ownerReferences"]] == [theirs.uid]

    run(full_control_plane, namespace, body)
