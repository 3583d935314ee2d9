"""The JSON patches the applier sends: from an object as read to the one built.

Pure: no kr8s, no I/O. Split from :mod:`modelcanary.workloads.applier` by
concern: what to change is decided here, from two plain dicts, and the
applier only reads, creates and sends what this returns. The comparison
rules (key-by-key labels, hashes for what the API server defaults) are
explained in the applier's docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelcanary.workloads.builders import ANNOTATION_AUTOSCALER_HASH, ANNOTATION_TEMPLATE_HASH

JsonPatch = list[dict[str, Any]]


class NotOurs(ValueError):
    """An object with the name we need exists, and the operator must not take it over."""


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


def autoscaler_ops(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JsonPatch:
    """The JSON patch from an existing revision HPA to the desired one ([] if none)."""
    ops = metadata_ops(existing, desired)
    have, want = existing.get("spec") or {}, desired["spec"]
    wanted_hash = desired["metadata"].get("annotations", {}).get(ANNOTATION_AUTOSCALER_HASH)
    have_hash = (existing["metadata"].get("annotations") or {}).get(ANNOTATION_AUTOSCALER_HASH)
    # Target and maximum are never defaulted, so a hand edit of them is seen (and
    # put back) directly; metrics only through the hash.
    edited = any(have.get(key) != want[key] for key in ("scaleTargetRef", "maxReplicas"))
    if wanted_hash is None or wanted_hash != have_hash or edited:
        # The whole spec, so metrics left out go back to the API server's
        # default rather than staying as they were.
        ops.append({"op": "replace", "path": "/spec", "value": want})
    elif have.get("minReplicas") != want["minReplicas"]:
        ops.append({"op": "replace", "path": "/spec/minReplicas", "value": want["minReplicas"]})
    return ops if len(ops) > 1 else []
