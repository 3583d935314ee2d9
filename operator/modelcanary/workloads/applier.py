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

A revision with ``predictor.autoscaling`` also has a HorizontalPodAutoscaler.
Its Deployment's ``spec.replicas`` then belongs to the HPA: the applier is
told not to manage it (it is written only when the Deployment is created or
woken from zero), and compares the HPA through ``modelcanary.io/autoscaler-hash``
(the API server defaults metrics left out to 80% CPU) plus ``minReplicas``.

Nothing here deletes anything except :func:`delete_revision` and
:func:`delete_autoscaler`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject, Deployment, HorizontalPodAutoscaler, Service

from modelcanary import rest
from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.rest import ObjectRef
from modelcanary.rollout.observations import RevisionObservation
from modelcanary.view.store import AUTOSCALER, DEPLOYMENT, SERVICE, Kind
from modelcanary.view.watch import View
from modelcanary.workloads.builders import LABEL_REVISION
from modelcanary.workloads.patches import (
    JsonPatch,
    autoscaler_ops,
    deployment_ops,
    service_ops,
)

Change = Literal["created", "patched", "unchanged"]


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_revision` did to each object."""

    deployment: Change
    service: Change
    autoscaler: Change | None = None
    """None when the revision is not autoscaled."""


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
    return await ObjectRef.of(kind, api, namespace, name).get()


async def _list_of_model(
    kind: type[APIObject], api: kr8s.asyncio.Api, namespace: str, md_name: str
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for item in api.get(
        kind,
        namespace=namespace,
        label_selector={LABEL_MODEL: model_label(md_name)},
        raw=True,
    ):
        assert isinstance(item, dict)
        found.append(json.loads(json.dumps(item)))
    return found


async def list_revisions(
    api: kr8s.asyncio.Api, namespace: str, md_name: str, *, view: View | None = None
) -> list[dict[str, Any]]:
    """Every Deployment of one ModelDeployment: from ``view``, or in one LIST call."""
    if view is not None:
        return await view.of_model(DEPLOYMENT, namespace, md_name)
    return await _list_of_model(Deployment, api, namespace, md_name)


async def list_autoscalers(
    api: kr8s.asyncio.Api, namespace: str, md_name: str, *, view: View | None = None
) -> list[dict[str, Any]]:
    """Every HorizontalPodAutoscaler of one ModelDeployment: from ``view``, or in one LIST."""
    if view is not None:
        return await view.of_model(AUTOSCALER, namespace, md_name)
    return await _list_of_model(HorizontalPodAutoscaler, api, namespace, md_name)


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


def _revision_label(obj: Mapping[str, Any]) -> str | None:
    revision = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
    return str(revision) if revision else None


def observe(
    deployment: Mapping[str, Any], autoscaler: Mapping[str, Any] | None = None
) -> RevisionObservation | None:
    """A Deployment (and its HPA) as the decision core sees it; None without a revision label."""
    revision = _revision_label(deployment)
    if not revision:
        return None
    autoscaler_min = (
        int((autoscaler.get("spec") or {}).get("minReplicas", 1))
        if autoscaler is not None
        else None
    )
    return RevisionObservation(
        revision=str(revision),
        exists=True,
        desired_replicas=int((deployment.get("spec") or {}).get("replicas", 1)),
        ready_replicas=int((deployment.get("status") or {}).get("readyReplicas", 0)),
        available=is_available(deployment),
        problem=deployment_problem(deployment),
        autoscaler_min_replicas=autoscaler_min,
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
    api: kr8s.asyncio.Api, namespace: str, md_name: str, *, view: View | None = None
) -> dict[str, RevisionObservation]:
    """revision -> what its Deployment (and HPA) report, for every revision of one
    ModelDeployment (read from ``view`` when given). An HPA whose Deployment is gone
    is not a revision."""
    deployments, autoscalers = await asyncio.gather(
        list_revisions(api, namespace, md_name, view=view),
        list_autoscalers(api, namespace, md_name, view=view),
    )
    by_revision = {_revision_label(hpa): hpa for hpa in autoscalers}
    observed: dict[str, RevisionObservation] = {}
    for deployment in deployments:
        seen = observe(deployment, by_revision.get(_revision_label(deployment)))
        if seen is not None:
            observed[seen.revision] = seen
    return observed


# --------------------------------------------------------------------------- writing


async def _create_or_patch(
    kind: type[APIObject],
    api: kr8s.asyncio.Api,
    manifest: Mapping[str, Any],
    diff: Callable[[Mapping[str, Any], Mapping[str, Any]], JsonPatch],
    existing: Mapping[str, Any] | None = None,
    *,
    absent: bool = False,
    view: View | None = None,
    view_kind: Kind | None = None,
) -> Change:
    """``view``: told the API server's answer to a create or patch (``view_kind``), so
    the rest of the pass reads what was written without asking again."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]

    def written(answer: dict[str, Any]) -> None:
        if view is not None and view_kind is not None:
            view.remember(view_kind, answer)

    if existing is None and not absent:
        existing = await read(kind, api, namespace, name)
    if existing is None:
        try:
            answer = await rest.create(kind, api, manifest)
        except kr8s.ServerError as error:
            # Someone (a previous pass, cut short) created it in between: patch instead.
            if error.response is None or error.response.status_code != 409:
                raise
            existing = await read(kind, api, namespace, name)
            if existing is None:
                raise
        else:
            written(answer)
            return "created"
    ops: JsonPatch = diff(existing, manifest)
    if not ops:
        return "unchanged"
    written(await ObjectRef.of(kind, api, namespace, name).patch(ops, type="json"))
    return "patched"


async def apply_service(
    api: kr8s.asyncio.Api,
    manifest: Mapping[str, Any],
    *,
    existing: Mapping[str, Any] | None = None,
    absent: bool = False,
    view: View | None = None,
) -> Change:
    """Create a Service, or patch the fields the operator manages; idempotent.

    ``existing`` is the Service as the caller just read it, which saves a GET;
    so does ``absent`` (it is created at once; a 409 falls back to read and patch).
    ``view`` is told what was written.
    """
    return await _create_or_patch(
        Service, api, manifest, service_ops, existing, absent=absent, view=view, view_kind=SERVICE
    )


async def apply_deployment(
    api: kr8s.asyncio.Api,
    manifest: Mapping[str, Any],
    *,
    manage_replicas: bool = True,
    absent: bool = False,
    view: View | None = None,
) -> Change:
    """Create a Deployment, or patch the fields the operator manages; idempotent.

    With ``manage_replicas=False`` (the replicas router owns the count) the
    manifest's replicas are used only when the Deployment is created.
    ``absent``: the caller has just read that it does not exist, so it is
    created without a GET first (a 409 still falls back to read and patch).
    """

    def diff(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
        return deployment_ops(existing, desired, manage_replicas=manage_replicas)

    return await _create_or_patch(
        Deployment, api, manifest, diff, absent=absent, view=view, view_kind=DEPLOYMENT
    )


async def apply_autoscaler(api: kr8s.asyncio.Api, manifest: Mapping[str, Any]) -> Change:
    """Create a revision's HPA, or patch the fields the operator manages; idempotent."""
    return await _create_or_patch(HorizontalPodAutoscaler, api, manifest, autoscaler_ops)


async def apply_revision(
    api: kr8s.asyncio.Api,
    manifest_deployment: Mapping[str, Any],
    manifest_service: Mapping[str, Any],
    *,
    manage_replicas: bool = True,
    manifest_autoscaler: Mapping[str, Any] | None = None,
    new: bool = False,
    view: View | None = None,
) -> Applied:
    """Create or update one revision's Deployment, Service and HPA. Never deletes anything.

    ``new``: the caller has just read that the revision has no Deployment, so
    its objects are created without reading them first (one request each, not
    two, for every new revision; what exists after all is patched as usual).
    ``view`` (the pass's direct view) is told what was written, so the router's
    ``set_weight`` that follows lists the new Deployment without asking again.
    """

    async def autoscaler() -> Change | None:
        if manifest_autoscaler is None:
            return None
        return await apply_autoscaler(api, manifest_autoscaler)

    deployment, service, hpa = await asyncio.gather(
        apply_deployment(
            api, manifest_deployment, manage_replicas=manage_replicas, absent=new, view=view
        ),
        apply_service(api, manifest_service, absent=new, view=view),
        autoscaler(),
    )
    return Applied(deployment=deployment, service=service, autoscaler=hpa)


async def scale_revision(api: kr8s.asyncio.Api, namespace: str, name: str, replicas: int) -> None:
    """Set a revision's replica count: one merge patch (the API server skips a no-op).

    Raises ``kr8s.NotFoundError`` when the Deployment does not exist.
    """
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, not {replicas}")
    await ObjectRef.of(Deployment, api, namespace, name).patch({"spec": {"replicas": replicas}})


async def _delete(kind: type[APIObject], api: kr8s.asyncio.Api, namespace: str, name: str) -> bool:
    obj = kind({"metadata": {"name": name, "namespace": namespace}}, api=api)
    try:
        await obj.delete(propagation_policy="Background")
    except kr8s.NotFoundError:
        return False
    return True


async def delete_autoscaler(api: kr8s.asyncio.Api, namespace: str, name: str) -> bool:
    """Delete a retired revision's HPA; True if it existed."""
    return await _delete(HorizontalPodAutoscaler, api, namespace, name)


async def delete_revision(api: kr8s.asyncio.Api, namespace: str, name: str) -> bool:
    """Delete a revision's Deployment, Service and HPA; True if any existed."""
    deleted = await asyncio.gather(
        *(
            _delete(kind, api, namespace, name)
            for kind in (Deployment, Service, HorizontalPodAutoscaler)
        )
    )
    return any(deleted)
