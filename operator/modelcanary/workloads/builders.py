"""Names and manifests for each revision's Deployment, Service and HPA, as plain dicts.

Pure, like dask-kubernetes' ``build_*_spec()`` helpers: no kopf, no kr8s, no
I/O. Everything the operator creates for a revision is a function of the
predictor, the ModelDeployment's name and the traffic port, so a restarted
operator rebuilds byte-for-byte the same manifests, and the applier can tell
"nothing to do" from "something changed" without guessing.

Two label sets are kept apart on purpose:

* the *selector* labels (``modelcanary.io/model`` and ``modelcanary.io/revision``)
  identify a revision's pods. They are immutable on a Deployment and part of the
  pod template, so they may only depend on what makes a revision a revision;
* the *role* (``stable`` or ``canary``) changes during a rollout. It sits on the
  Deployment's and Service's metadata only, never in the pod template, so a
  promotion relabels two objects and restarts no pod.

Names are DNS labels: ``<md_name>-<revision>`` fits in 63 characters by
shortening the ModelDeployment's part and never the revision hash, because
the hash is what tells revisions apart.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from modelcanary.api.modeldeployment import (
    API_VERSION,
    Predictor,
)
from modelcanary.api.names import (
    LABEL_MODEL,
    MAX_NAME,
    dns_label,
    label_value,
    model_label,
    short_hash,
)

LABEL_REVISION: Final = "modelcanary.io/revision"
LABEL_ROLE: Final = "modelcanary.io/role"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_VERSION: Final = "app.kubernetes.io/version"
MANAGED_BY: Final = "modelcanary"

ANNOTATION_MODEL_URI: Final = "modelcanary.io/model-uri"
ANNOTATION_TEMPLATE_HASH: Final = "modelcanary.io/template-hash"
"""A hash of the Deployment's selector and pod template as built here. The API
server fills in defaults all over a pod template, so comparing templates field by
field would always see a difference; comparing this hash does not."""

ANNOTATION_AUTOSCALER_HASH: Final = "modelcanary.io/autoscaler-hash"
"""A hash of an HPA's target, maximum and metrics as built here: the API server
fills in metrics left out (80% CPU) and the defaults inside each metric, so, as
for a pod template, the applier compares this hash rather than the fields.
minReplicas moves during a canary and is compared by value."""

PORT_NAME: Final = "http"
REVISION_HISTORY_LIMIT: Final = 2

ENV_MODEL_NAME: Final = "MODEL_NAME"
ENV_MODEL_VERSION: Final = "MODEL_VERSION"
ENV_MODEL_URI: Final = "MODEL_URI"
ENV_MODEL_REVISION: Final = "MODEL_REVISION"

Role = Literal["stable", "canary"]
ROLES: Final = ("stable", "canary")


@dataclass(frozen=True)
class OwnerRef:
    """The ModelDeployment that owns what the operator creates for it."""

    api_version: str
    kind: str
    name: str
    uid: str

    def to_dict(self) -> dict[str, Any]:
        # controller=true: the garbage collector removes a revision with its
        # ModelDeployment, and no other controller can adopt the objects.
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def owner_of(obj: Mapping[str, Any]) -> OwnerRef:
    """The owner reference of the ModelDeployment ``obj``."""
    metadata = obj["metadata"]
    return OwnerRef(
        api_version=API_VERSION, kind="ModelDeployment", name=metadata["name"], uid=metadata["uid"]
    )


# --------------------------------------------------------------------------- names


def revision_name(md_name: str, revision: str) -> str:
    """``<md_name>-<revision>``: the name of a revision's Deployment and Service.

    Always a DNS label of at most 63 characters. When it would be longer, the
    ModelDeployment's part is shortened and the revision hash is kept whole.
    """
    if not re.fullmatch(r"[a-z0-9]+", revision):
        raise ValueError(f"revision {revision!r} must be lowercase alphanumeric")
    room = MAX_NAME - len(revision) - 1
    if room < 1:
        raise ValueError(f"revision {revision!r} is too long for a name")
    return f"{dns_label(md_name, room)}-{revision}"


def revision_of(md_name: str, name: str) -> str | None:
    """The revision a name built by :func:`revision_name` stands for, or None if it is not one."""
    _, _, revision = name.rpartition("-")
    if not revision:
        return None
    try:
        return revision if revision_name(md_name, revision) == name else None
    except ValueError:
        return None


def shared_service_name(md_name: str, service: str | None = None) -> str:
    """The replicas router's Service: the one named in the spec, or the ModelDeployment's."""
    return service if service is not None else dns_label(md_name)


# --------------------------------------------------------------------------- labels


def selector_labels(md_name: str, revision: str) -> dict[str, str]:
    """The labels that select one revision's pods; immutable for the life of a Deployment."""
    return {LABEL_MODEL: model_label(md_name), LABEL_REVISION: revision}


def revision_labels(
    md_name: str, revision: str, predictor: Predictor, role: Role
) -> dict[str, str]:
    """Metadata labels of a revision's Deployment and Service (not of its pods)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    return {
        **selector_labels(md_name, revision),
        LABEL_ROLE: role,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: model_label(md_name),
        LABEL_VERSION: label_value(predictor.model.version),
    }


def _metadata(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    owner: OwnerRef,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner.to_dict()],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


# --------------------------------------------------------------------------- pod template


def _model_env(predictor: Predictor, revision: str) -> list[dict[str, Any]]:
    model = predictor.model
    return [
        {"name": ENV_MODEL_NAME, "value": model.name},
        {"name": ENV_MODEL_VERSION, "value": model.version},
        {"name": ENV_MODEL_URI, "value": model.uri},
        {"name": ENV_MODEL_REVISION, "value": revision},
    ]


def _model_server(container: dict[str, Any], env: list[dict[str, Any]], port: int) -> None:
    """Give the model server (a deep copy, changed in place) its env and its http port."""
    ours = {entry["name"] for entry in env}
    # Ours come first: a user's variable may refer to $(MODEL_URI), and Kubernetes
    # only expands references to variables defined earlier in the list.
    container["env"] = env + [e for e in container.get("env") or [] if e.get("name") not in ours]
    ports: list[dict[str, Any]] = container.setdefault("ports", [])
    serving = next((p for p in ports if p.get("containerPort") == port), None)
    named = next((p for p in ports if p.get("name") == PORT_NAME), None)
    if named is not None and named is not serving:
        raise ValueError(
            f"the model server's port named {PORT_NAME!r} is {named.get('containerPort')}, "
            f"but traffic.port is {port}"
        )
    if serving is None:
        ports.append({"name": PORT_NAME, "containerPort": port, "protocol": "TCP"})
    elif serving.get("name") not in (None, PORT_NAME):
        raise ValueError(
            f"the model server's port {port} is named {serving['name']!r}; "
            f"name it {PORT_NAME!r} or leave it unnamed"
        )
    else:
        serving["name"] = PORT_NAME


def build_pod_template(
    *, md_name: str, revision: str, predictor: Predictor, port: int
) -> dict[str, Any]:
    """The revision's pod template: the user's, plus our labels, env and port. Role-free."""
    template = copy.deepcopy(predictor.template.to_dict())
    metadata: dict[str, Any] = template.get("metadata") or {}
    metadata["labels"] = {**(metadata.get("labels") or {}), **selector_labels(md_name, revision)}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        ANNOTATION_MODEL_URI: predictor.model.uri,
    }
    template["metadata"] = metadata
    _model_server(template["spec"]["containers"][0], _model_env(predictor, revision), port)
    return template


def template_hash(deployment_spec: Mapping[str, Any]) -> str:
    """The hash stored in ``modelcanary.io/template-hash``: selector and pod template."""
    canonical = json.dumps(
        {"selector": deployment_spec["selector"], "template": deployment_spec["template"]},
        sort_keys=True,
        separators=(",", ":"),
    )
    return short_hash(canonical, 16)


# --------------------------------------------------------------------------- manifests


def build_deployment_spec(
    *,
    md_name: str,
    namespace: str,
    revision: str,
    predictor: Predictor,
    replicas: int,
    role: Role,
    port: int,
    owner: OwnerRef,
) -> dict[str, Any]:
    """The full Deployment manifest of one revision."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, not {replicas}")
    spec: dict[str, Any] = {
        "replicas": replicas,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "selector": {"matchLabels": selector_labels(md_name, revision)},
        "template": build_pod_template(
            md_name=md_name, revision=revision, predictor=predictor, port=port
        ),
    }
    annotations = {
        ANNOTATION_MODEL_URI: predictor.model.uri,
        ANNOTATION_TEMPLATE_HASH: template_hash(spec),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            revision_name(md_name, revision),
            namespace,
            revision_labels(md_name, revision, predictor, role),
            owner,
            annotations,
        ),
        "spec": spec,
    }


def _service_port(port: int) -> dict[str, Any]:
    return {"name": PORT_NAME, "port": port, "targetPort": PORT_NAME, "protocol": "TCP"}


def build_service_spec(
    *,
    md_name: str,
    namespace: str,
    revision: str,
    predictor: Predictor,
    role: Role,
    port: int,
    owner: OwnerRef,
) -> dict[str, Any]:
    """One revision's ClusterIP Service: what a Gateway API route points its backends at."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            revision_name(md_name, revision),
            namespace,
            revision_labels(md_name, revision, predictor, role),
            owner,
            {ANNOTATION_MODEL_URI: predictor.model.uri},
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(md_name, revision),
            "ports": [_service_port(port)],
        },
    }


def build_shared_service_spec(
    *,
    md_name: str,
    namespace: str,
    port: int,
    owner: OwnerRef,
    name: str | None = None,
) -> dict[str, Any]:
    """The replicas router's Service, selecting the pods of every revision of the model.

    ``name`` is ``traffic.replicas.service``; the ModelDeployment's name when unset.
    """
    labels = {
        LABEL_MODEL: model_label(md_name),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: model_label(md_name),
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(shared_service_name(md_name, name), namespace, labels, owner),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_MODEL: model_label(md_name)},
            "ports": [_service_port(port)],
        },
    }


def build_autoscaler_spec(
    *,
    md_name: str,
    namespace: str,
    revision: str,
    predictor: Predictor,
    role: Role,
    min_replicas: int,
    owner: OwnerRef,
) -> dict[str, Any]:
    """One revision's HorizontalPodAutoscaler (autoscaling/v2), aimed at its Deployment.

    ``min_replicas`` is the operator's choice for now: the user's minimum, or the
    canary's higher floor while it takes a share of the traffic.
    """
    autoscaling = predictor.autoscaling
    if autoscaling is None:
        raise ValueError("the predictor has no autoscaling")
    if not 1 <= min_replicas <= autoscaling.max_replicas:
        raise ValueError(
            f"minReplicas {min_replicas} must be between 1 and maxReplicas "
            f"{autoscaling.max_replicas}"
        )
    name = revision_name(md_name, revision)
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": min_replicas,
        "maxReplicas": autoscaling.max_replicas,
    }
    if autoscaling.metrics:
        spec["metrics"] = [metric.to_dict() for metric in autoscaling.metrics]
    fixed = {key: value for key, value in spec.items() if key != "minReplicas"}
    annotations = {
        ANNOTATION_AUTOSCALER_HASH: short_hash(
            json.dumps(fixed, sort_keys=True, separators=(",", ":")), 16
        )
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(
            name,
            namespace,
            revision_labels(md_name, revision, predictor, role),
            owner,
            annotations,
        ),
        "spec": spec,
    }
