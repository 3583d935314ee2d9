"""Put a ModelDeployment's drill schedule into the cluster, or take it out.

Thin I/O around :mod:`modelcanary.drills.schedule`, on kr8s's async API, with
the applier's create-or-patch (:mod:`modelcanary.workloads.applier`): read the
object, compare only what the operator manages, send one JSON patch of the
differences or nothing at all. Four objects, all named ``<md>-drill``: the
ServiceAccount a scheduled Job runs as, its Role and RoleBinding, and the
CronJob. The rights are applied before the CronJob, so no Job starts without
them; they are removed after it, so none is left running without them.

Two choices differ from the revision applier, on purpose:

* an object of that name must already carry an ownerReference to this very
  ModelDeployment, or it is refused (:class:`NotOurs`). The applier adopts an
  unowned Deployment, whose name holds a revision hash and so is almost
  certainly an earlier one of ours; ``<md>-drill`` is a name a person may well
  have picked, and adopting their Role would rewrite what it grants and tie its
  life to the ModelDeployment;
* the CronJob's ``jobTemplate`` is compared through the
  ``modelcanary.io/template-hash`` annotation, for the applier's reason: the API
  server fills in defaults all through a pod template, so comparing field by
  field would patch on every pass. The CronJob's own fields (schedule, suspend
  and the rest the builder sets) are compared one by one and patched alone.

Removal deletes only what carries both the ``managed-by`` label and a
controller reference to a ModelDeployment of that name, and only the object it
read (a uid precondition), so a same-named object made since is left alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject, CronJob, Role, RoleBinding, ServiceAccount

from modelcanary.api.modeldeployment import (
    GROUP,
    DrillSchedule,
)
from modelcanary.drills.schedule import (
    MANAGED_BY,
    build_drill_cronjob_spec,
    build_drill_rbac_specs,
    drill_job_name,
)
from modelcanary.view.store import CRONJOB
from modelcanary.view.watch import View
from modelcanary.workloads.applier import _create_or_patch, read
from modelcanary.workloads.builders import ANNOTATION_TEMPLATE_HASH
from modelcanary.workloads.patches import (
    JsonPatch,
    NotOurs,
    _check_ownership,
    _pointer,
    metadata_ops,
)

__all__ = [
    "DrillScheduleConflict",
    "NotOurs",
    "apply_drill_schedule",
    "cronjob_ops",
    "is_ours",
    "job_template_hash",
    "remove_drill_schedule",
    "role_binding_ops",
    "role_ops",
    "service_account_ops",
    "with_template_hash",
]

# Rights first, the CronJob last; removal goes the other way round.
_KINDS: tuple[type[APIObject], ...] = (ServiceAccount, Role, RoleBinding, CronJob)


# --------------------------------------------------------------------------- ownership


class DrillScheduleConflict(NotOurs):
    """An object the drill schedule needs exists and is someone else's.

    Waiting does not help: a person has to rename or delete it. A plain
    :class:`NotOurs` is raised instead for an object that is being deleted,
    because that one resolves itself and the next try creates it.
    """


def _where(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> str:
    metadata = existing["metadata"]
    return f"{desired['kind']} {metadata.get('namespace')}/{metadata['name']}"


def _require_ours(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
    """Refuse anything without our ownerReference, not only what another controller holds."""
    try:
        _check_ownership(existing, desired)
    except NotOurs as refused:
        if existing["metadata"].get("deletionTimestamp"):
            raise
        raise DrillScheduleConflict(str(refused)) from refused
    ours = {ref["uid"] for ref in desired["metadata"]["ownerReferences"]}
    have = {ref.get("uid") for ref in existing["metadata"].get("ownerReferences") or []}
    if not ours & have:
        owner = desired["metadata"]["ownerReferences"][0]
        raise DrillScheduleConflict(
            f"{_where(existing, desired)} exists and is not owned by "
            f"{owner['kind']} {owner['name']}; rename or delete it to let the drill "
            "schedule be created"
        )


def is_ours(body: Mapping[str, Any], md_name: str) -> bool:
    """Made by the operator for the ModelDeployment ``md_name`` (whatever its uid)."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if any(labels.get(key) != value for key, value in MANAGED_BY.items()):
        return False
    return any(
        ref.get("controller")
        and ref.get("kind") == "ModelDeployment"
        and ref.get("name") == md_name
        # The group, not the version: a reference written before an API bump still counts.
        and str(ref.get("apiVersion", "")).split("/")[0] == GROUP
        for ref in metadata.get("ownerReferences") or []
    )


# --------------------------------------------------------------------------- diffing


def _owned_metadata_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    _require_ours(existing, desired)
    return metadata_ops(existing, desired)


def _only_if_changed(ops: JsonPatch) -> JsonPatch:
    # The first op is always the uid test; alone it changes nothing.
    return ops if len(ops) > 1 else []


def service_account_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """Labels only: the token controller and others own the rest of a ServiceAccount."""
    return _only_if_changed(_owned_metadata_ops(existing, desired))


def role_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """The JSON patch from an existing drill Role to the desired one ([] if none)."""
    ops = _owned_metadata_ops(existing, desired)
    if existing.get("rules") != desired["rules"]:
        ops.append({"op": "add", "path": "/rules", "value": desired["rules"]})
    return _only_if_changed(ops)


def _subject(subject: Mapping[str, Any]) -> dict[str, Any]:
    # A ServiceAccount subject's apiGroup is "" whether written or left out.
    return {key: value for key, value in subject.items() if value != ""}


def role_binding_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """The JSON patch from an existing drill RoleBinding to the desired one ([] if none)."""
    ops = _owned_metadata_ops(existing, desired)
    if existing.get("roleRef") != desired["roleRef"]:
        raise DrillScheduleConflict(
            f"{_where(existing, desired)} binds {existing.get('roleRef')}, not "
            f"{desired['roleRef']}; a roleRef cannot change, so delete it to let the "
            "operator create it again"
        )
    have = [_subject(s) for s in existing.get("subjects") or []]
    if have != [_subject(s) for s in desired["subjects"]]:
        ops.append({"op": "add", "path": "/subjects", "value": desired["subjects"]})
    return _only_if_changed(ops)


def job_template_hash(cronjob: Mapping[str, Any]) -> str:
    """What ``modelcanary.io/template-hash`` holds on a drill CronJob."""
    canonical = json.dumps(cronjob["spec"]["jobTemplate"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_template_hash(cronjob: Mapping[str, Any]) -> dict[str, Any]:
    """The builder's CronJob, annotated with the hash of its jobTemplate (a copy)."""
    annotated: dict[str, Any] = copy.deepcopy(dict(cronjob))
    annotations = annotated["metadata"].setdefault("annotations", {})
    annotations[ANNOTATION_TEMPLATE_HASH] = job_template_hash(annotated)
    return annotated


def cronjob_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """The JSON patch from an existing drill CronJob to the desired one ([] if none).

    ``desired`` carries the template hash (:func:`with_template_hash`).
    """
    ops = _owned_metadata_ops(existing, desired)
    have, want = existing.get("spec") or {}, desired["spec"]
    for field, value in want.items():
        if field != "jobTemplate" and have.get(field) != value:
            ops.append({"op": "add", "path": _pointer("spec", field), "value": value})
    have_hash = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH)
    if have_hash != desired["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]:
        ops.append({"op": "replace", "path": "/spec/jobTemplate", "value": want["jobTemplate"]})
    return _only_if_changed(ops)


# --------------------------------------------------------------------------- writing


async def apply_drill_schedule(
    api: kr8s.asyncio.Api,
    *,
    md_name: str,
    md_uid: str,
    namespace: str,
    drill: DrillSchedule,
    image: str,
) -> None:
    """Create the drill schedule's four objects, or patch what differs; idempotent.

    Raises :class:`DrillScheduleConflict` for an object of the same name that
    this ModelDeployment does not own, and a plain :class:`NotOurs` for one
    still being deleted; whatever was applied before either stays.
    """
    account, role, binding = build_drill_rbac_specs(
        md_name=md_name, md_uid=md_uid, namespace=namespace
    )
    cronjob = build_drill_cronjob_spec(
        md_name=md_name, md_uid=md_uid, namespace=namespace, drill=drill, image=image
    )
    # One after the other: a refusal stops the pass before the CronJob exists.
    await _create_or_patch(ServiceAccount, api, account, service_account_ops)
    await _create_or_patch(Role, api, role, role_ops)
    await _create_or_patch(RoleBinding, api, binding, role_binding_ops)
    await _create_or_patch(CronJob, api, with_template_hash(cronjob), cronjob_ops)


# --------------------------------------------------------------------------- removing


def _status(error: kr8s.ServerError) -> int | None:
    return None if error.response is None else error.response.status_code


async def _delete_exactly(
    kind: type[APIObject], api: kr8s.asyncio.Api, body: Mapping[str, Any]
) -> bool:
    """Delete the object that was read; False if it is gone or was replaced since.

    kr8s's ``delete`` takes no preconditions, hence the plain DELETE.
    """
    metadata = body["metadata"]
    options = {
        # A CronJob's Jobs (and their Pods) go with it.
        "propagationPolicy": "Background",
        "preconditions": {"uid": metadata["uid"]},
    }
    try:
        async with api.call_api(
            "DELETE",
            version=kind.version,
            url=f"{kind.endpoint}/{metadata['name']}",
            namespace=metadata["namespace"],
            content=json.dumps(options),
        ):
            pass
    except kr8s.ServerError as error:
        # 404: gone already; 409: the uid precondition failed, so it is someone else's now.
        if _status(error) in (404, 409):
            return False
        raise
    return True


async def _remove(
    kind: type[APIObject], api: kr8s.asyncio.Api, namespace: str, md_name: str
) -> bool:
    body = await read(kind, api, namespace, drill_job_name(md_name))
    if body is None or not is_ours(body, md_name):
        return False
    if body["metadata"].get("deletionTimestamp"):
        return False
    return await _delete_exactly(kind, api, body)


async def remove_drill_schedule(
    api: kr8s.asyncio.Api,
    *,
    md_name: str,
    namespace: str,
    only_if_scheduled: bool = False,
    view: View | None = None,
) -> bool:
    """Delete the drill schedule's objects that exist and are ours; True if any was deleted.

    Objects of the same name that are not ours are left alone. With
    ``only_if_scheduled``, nothing is read or deleted when there is no CronJob
    of ours, as ``view`` sees it (the watches' view: no request once it has
    listed CronJobs). That is what a sharded loop finds for almost every
    ModelDeployment when it starts: at a restart or a handover, reading the
    four objects each was 4,000 requests for 1,000 models, 40 s at the default
    limit. The CronJob is created last and removed first, so without it no
    drill runs; a ServiceAccount and its rights left by a removal cut short
    run nothing, and go with the ModelDeployment.
    """
    if only_if_scheduled:
        name = drill_job_name(md_name)
        cronjob = await (
            view.get(CRONJOB, namespace, name)
            if view is not None
            else read(CronJob, api, namespace, name)
        )
        if cronjob is None or not is_ours(cronjob, md_name):
            return False
    deleted = [await _remove(kind, api, namespace, md_name) for kind in reversed(_KINDS)]
    return any(deleted)
