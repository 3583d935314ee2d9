"""Put a revision's manifests into the cluster, scale it, read it back, remove it.

Thin I/O around :mod:`modelcanary.workloads.builders`, on kr8s's async API.

Create-or-patch rather than server-side apply: kr8s 0.20 has no apply call,
and server-side apply would also take ``spec.replicas`` away from the replicas
router. With apply, a field that one apply declares and the next one leaves
out is removed (reset to its default, 1 replica) unless another manager owns
it, and whether the operator declares the replica count depends on the router.
So the applier reads the object, compares only what it manages, and sends one
JSON patch of the differences, or nothing at all:

* labels and annotations are set key by key; keys that others added stay;
* the pod template is compared through the ``modelcanary.io/template-hash``
  annotation, because the API server fills in defaults throughout a pod
  template and a field-by-field comparison would never be equal. A role or
  replica change therefore touches metadata or ``spec.replicas`` only, and
  never starts a new ReplicaSet;
* an object owned by another controller, or being deleted, is refused rather
  than taken over; the next pass tries again.

Nothing here deletes anything except :func:`delete_revision`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject, Deployment, Service

from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.rollout.observations import RevisionObservation
from modelcanary.workloads.builders import ANNOTATION_TEMPLATE_HASH, LABEL_REVISION

Change = Literal["created", "patched", "unchanged"]
JsonPatch = list[dict[str, Any]]


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_revision` did to each object."""

    deployment: Change
    service: Change


class NotOurs(ValueError):
    """An object with the name we need exists, and the operator must not take it over."""


# --------------------------------------------------------------------------- reading


def plain(obj: APIObject) -> dict[str, Any]:
    """A kr8s object's body as plain dicts and lists (kr8s keeps it in a Box)."""
    body: dict[str, Any] = json.loads(json.dumps(obj.raw))
    return body


async def read(
    kind: type[APIObject], api: kr8s.asyncio.Api, namespace: str, name: str
) -> dict[str, Any] | None:
    """One GET; None when the object does not exist.

    Not ``Kind.get``: that one lists with a field selector and keeps retrying
    for two seconds when nothing is found, which a missing object always is.
    """
    obj = kind({"metadata": {"name": name, "namespace": namespace}}, api=api)
    try:
        await obj.refresh()
    except kr8s.NotFoundError:
        return None
    return plain(obj)


async def list_revisions(
    api: kr8s.asyncio.Api, namespace: str, md_name: str
) -> list[dict[str, Any]]:
    """Every Deployment of one ModelDeployment, in one LIST call."""
    found: list[dict[str, Any]] = []
    async for item in api.get(
        Deployment,
        namespace=namespace,
        label_selector={LABEL_MODEL: model_label(md_name)},
        raw=True,
    ):
        assert isinstance(item, dict)
        found.append(json.loads(json.dumps(item)))
    return found


def is_available(deployment: Mapping[str, Any]) -> bool:
    """Available=True, fully rolled out, and every desired replica ready (at least one)."""
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (
        conditions.get("Available") == "True"
        and int(status.get("observedGeneration", 0)) >= int(metadata.get("generation", 0))
        and int(status.get("updatedReplicas", 0)) == desired
        and int(status.get("readyReplicas", 0)) == desired
        and desired > 0
    )


def observe(deployment: Mapping[str, Any]) -> RevisionObservation | None:
    """A Deployment as the decision core sees it; None for one without a revision label."""
    revision = ((deployment.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
    if not revision:
        return None
    return RevisionObservation(
        revision=str(revision),
        exists=True,
        desired_replicas=int((deployment.get("spec") or {}).get("replicas", 1)),
        ready_replicas=int((deployment.get("status") or {}).get("readyReplicas", 0)),
        available=is_available(deployment),
        problem=deployment_problem(deployment),
    )


def deployment_problem(deployment: Mapping[str, Any]) -> str | None:
    """The Deployment controller's own words for why pods are not coming up, if any."""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        failing = (
            condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        ) or (condition.get("type") == "Progressing" and condition.get("status") == "False")
        if failing:
            return f"{condition.get('reason', condition['type'])}: {condition.get('message', '')}"
    return None


async def observe_revisions(
    api: kr8s.asyncio.Api, namespace: str, md_name: str
) -> dict[str, RevisionObservation]:
    """revision -> what its Deployment reports, for every revision of one ModelDeployment."""
    observed: dict[str, RevisionObservation] = {}
    for deployment in await list_revisions(api, namespace, md_name):
        seen = observe(deployment)
        if seen is not None:
            observed[seen.revision] = seen
    return observed


# --------------------------------------------------------------------------- diffing


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _map_ops(
    field: str, existing: Mapping[str, Any] | None, desired: Mapping[str, str]
) -> JsonPatch:
    """Set each desired key of metadata.labels/annotations; leave every other key alone."""
    if not desired:
        return []
    if existing is None:
        return [{"op": "add", "path": _pointer("metadata", field), "value": dict(desired)}]
    return [
        {"op": "add", "path": _pointer("metadata", field, key), "value": value}
        for key, value in desired.items()
        if existing.get(key) != value
    ]


def _check_ownership(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
    metadata = existing["metadata"]
    where = f"{desired['kind']} {metadata.get('namespace')}/{metadata['name']}"
    if metadata.get("deletionTimestamp"):
        raise NotOurs(f"{where} is being deleted; it will be created again once it is gone")
    ours = {ref["uid"] for ref in desired["metadata"].get("ownerReferences", [])}
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") not in ours:
            raise NotOurs(f"{where} is controlled by {ref.get('kind')} {ref.get('name')}")


def metadata_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """Labels, annotations and our owner reference, where they differ."""
    _check_ownership(existing, desired)
    have, want = existing["metadata"], desired["metadata"]
    ops = [
        # Patch the object that was read, not one deleted and created again since.
        {"op": "test", "path": "/metadata/uid", "value": have["uid"]},
        *_map_ops("labels", have.get("labels"), want.get("labels") or {}),
        *_map_ops("annotations", have.get("annotations"), want.get("annotations") or {}),
    ]
    present = {ref.get("uid") for ref in have.get("ownerReferences") or []}
    missing = [ref for ref in want.get("ownerReferences", []) if ref["uid"] not in present]
    if missing and not have.get("ownerReferences"):
        ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": missing})
    else:
        ops += [{"op": "add", "path": "/metadata/ownerReferences/-", "value": r} for r in missing]
    return ops


def deployment_ops(
    existing: Mapping[str, Any], desired: Mapping[str, Any], *, manage_replicas: bool
) -> JsonPatch:
    """The JSON patch from an existing revision Deployment to the desired one ([] if none)."""
    ops = metadata_ops(existing, desired)
    have, want = existing.get("spec") or {}, desired["spec"]
    if have.get("selector") != want["selector"]:
        name = existing["metadata"]["name"]
        raise NotOurs(
            f"Deployment {name} selects {have.get('selector')}, not {want['selector']}; "
            "a selector cannot change, so delete it to let the operator create it again"
        )
    wanted_hash = desired["metadata"].get("annotations", {}).get(ANNOTATION_TEMPLATE_HASH)
    have_hash = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH)
    if wanted_hash is None or wanted_hash != have_hash:
        ops.append({"op": "replace", "path": "/spec/template", "value": want["template"]})
    if manage_replicas and have.get("replicas") != want["replicas"]:
        ops.append({"op": "replace", "path": "/spec/replicas", "value": want["replicas"]})
    if have.get("revisionHistoryLimit") != want.get("revisionHistoryLimit"):
        ops.append(
            {
                "op": "replace",
                "path": "/spec/revisionHistoryLimit",
                "value": want["revisionHistoryLimit"],
            }
        )
    return ops if len(ops) > 1 else []


def _ports(ports: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
    return [
        (p.get("name"), p.get("port"), p.get("targetPort", p.get("port")), p.get("protocol", "TCP"))
        for p in ports or []
    ]


def service_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """The JSON patch from an existing Service to the desired one ([] if none)."""
    ops = metadata_ops(existing, desired)
    have, want = existing.get("spec") or {}, desired["spec"]
    type_changed = have.get("type", "ClusterIP") != want["type"]
    if type_changed:
        ops.append({"op": "replace", "path": "/spec/type", "value": want["type"]})
    if have.get("selector") != want["selector"]:
        ops.append({"op": "add", "path": "/spec/selector", "value": want["selector"]})
    # Replacing the ports also drops the nodePorts a NodePort Service had.
    if type_changed or _ports(have.get("ports")) != _ports(want["ports"]):
        ops.append({"op": "replace", "path": "/spec/ports", "value": want["ports"]})
    return ops if len(ops) > 1 else []


# --------------------------------------------------------------------------- writing


async def _create_or_patch(
    kind: type[APIObject],
    api: kr8s.asyncio.Api,
    manifest: Mapping[str, Any],
    diff: Callable[[Mapping[str, Any], Mapping[str, Any]], JsonPatch],
    existing: Mapping[str, Any] | None = None,
) -> Change:
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    if existing is None:
        existing = await read(kind, api, namespace, name)
    if existing is None:
        try:
            await kind(json.loads(json.dumps(manifest)), api=api).create()
        except kr8s.ServerError as error:
            # Someone (a previous pass, cut short) created it in between: patch instead.
            if error.response is None or error.response.status_code != 409:
                raise
            existing = await read(kind, api, namespace, name)
            if existing is None:
                raise
        else:
            return "created"
    ops: JsonPatch = diff(existing, manifest)
    if not ops:
        return "unchanged"
    obj = kind({"metadata": {"name": name, "namespace": namespace}}, api=api)
    await obj.patch(ops, type="json")
    return "patched"


async def apply_service(
    api: kr8s.asyncio.Api,
    manifest: Mapping[str, Any],
    *,
    existing: Mapping[str, Any] | None = None,
) -> Change:
    """Create a Service, or patch the fields the operator manages; idempotent.

    ``existing`` is the Service as the caller just read it, which saves a GET.
    """
    return await _create_or_patch(Service, api, manifest, service_ops, existing)


async def apply_deployment(
    api: kr8s.asyncio.Api, manifest: Mapping[str, Any], *, manage_replicas: bool = True
) -> Change:
    """Create a Deployment, or patch the fields the operator manages; idempotent.

    With ``manage_replicas=False`` (the replicas router owns the count) the
    manifest's replicas are used only when the Deployment is created.
    """

    def diff(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
        return deployment_ops(existing, desired, manage_replicas=manage_replicas)

    return await _create_or_patch(Deployment, api, manifest, diff)


async def apply_revision(
    api: kr8s.asyncio.Api,
    manifest_deployment: Mapping[str, Any],
    manifest_service: Mapping[str, Any],
    *,
    manage_replicas: bool = True,
) -> Applied:
    """Create or update one revision's Deployment and Service. Never deletes anything."""
    deployment, service = await asyncio.gather(
        apply_deployment(api, manifest_deployment, manage_replicas=manage_replicas),
        apply_service(api, manifest_service),
    )
    return Applied(deployment=deployment, service=service)


async def scale_revision(api: kr8s.asyncio.Api, namespace: str, name: str, replicas: int) -> None:
    """Set a revision's replica count: one merge patch (the API server skips a no-op).

    Raises ``kr8s.NotFoundError`` when the Deployment does not exist.
    """
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, not {replicas}")
    deployment = Deployment({"metadata": {"name": name, "namespace": namespace}}, api=api)
    await deployment.patch({"spec": {"replicas": replicas}}, type="merge")


async def delete_revision(api: kr8s.asyncio.Api, namespace: str, name: str) -> bool:
    """Delete a revision's Deployment and Service; True if either existed."""

    async def delete(kind: type[APIObject]) -> bool:
        obj = kind({"metadata": {"name": name, "namespace": namespace}}, api=api)
        try:
            await obj.delete(propagation_policy="Background")
        except kr8s.NotFoundError:
            return False
        return True

    deleted = await asyncio.gather(delete(Deployment), delete(Service))
    return any(deleted)
