"""Pure builders for a ModelDeployment's drill schedule: a CronJob and its rights.

Each scheduled run is a Job that runs ``modelcanary drill create`` from the
operator's own image, so the only thing a run does is create one
RollbackDrill object; the operator carries the drill out. The Job's
ServiceAccount may create RollbackDrills in its namespace and read
ModelDeployments, nothing else.
"""

from __future__ import annotations

from typing import Any

from modelcanary.api.modeldeployment import (
    API_VERSION,
    GROUP,
    DrillSchedule,
)
from modelcanary.api.names import LABEL_MODEL, dns_label, model_label

MANAGED_BY = {"app.kubernetes.io/managed-by": "modelcanary"}


def drill_job_name(md_name: str) -> str:
    # CronJob names are limited to 52 characters (the controller appends a
    # suffix); the same name is the ServiceAccount's, Role's and RoleBinding's.
    return f"{dns_label(md_name, 52 - len('-drill'))}-drill"


def _owner(md_name: str, md_uid: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "name": md_name,
            "uid": md_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(md_name: str, md_uid: str, namespace: str) -> dict[str, Any]:
    return {
        "name": drill_job_name(md_name),
        "namespace": namespace,
        "labels": {**MANAGED_BY, LABEL_MODEL: model_label(md_name)},
        "ownerReferences": _owner(md_name, md_uid),
    }


def build_drill_cronjob_spec(
    *, md_name: str, md_uid: str, namespace: str, drill: DrillSchedule, image: str
) -> dict[str, Any]:
    metadata = _metadata(md_name, md_uid, namespace)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": drill.schedule,
            "suspend": drill.suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 2,
            "jobTemplate": {
                "metadata": {"labels": metadata["labels"]},
                "spec": {
                    "backoffLimit": 2,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {
                        "metadata": {"labels": metadata["labels"]},
                        "spec": {
                            "serviceAccountName": metadata["name"],
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [
                                {
                                    "name": "create-drill",
                                    "image": image,
                                    "command": ["modelcanary"],
                                    "args": [
                                        "drill",
                                        "create",
                                        md_name,
                                        "--mode",
                                        str(drill.mode),
                                        "--namespace",
                                        namespace,
                                        "--source",
                                        "schedule",
                                    ],
                                    "securityContext": {
                                        "allowPrivilegeEscalation": False,
                                        "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]},
                                    },
                                    "resources": {
                                        "requests": {"cpu": "10m", "memory": "64Mi"},
                                        "limits": {"memory": "128Mi"},
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        },
    }


def build_drill_rbac_specs(*, md_name: str, md_uid: str, namespace: str) -> list[dict[str, Any]]:
    """The ServiceAccount, Role and RoleBinding a scheduled drill Job runs with."""
    metadata = _metadata(md_name, md_uid, namespace)
    name = metadata["name"]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata,
            "rules": [
                {"apiGroups": [GROUP], "resources": ["rollbackdrills"], "verbs": ["create"]},
                {"apiGroups": [GROUP], "resources": ["modeldeployments"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
