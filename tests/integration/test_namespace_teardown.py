"""A test's namespace does not stay Terminating on the operator's finalizer.

By the time a test's namespace is deleted, the operator that finalizes its
ModelDeployments has stopped, so nothing would ever remove the finalizer. The
harness releases it; this checks that it does, on the real API server.
"""

from __future__ import annotations

import secrets
from typing import Any

import kr8s
import pytest
from kr8s.objects import Namespace, new_class

from e2e.harness.pytest_plugin import _release_finalized

pytestmark = pytest.mark.integration

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)
FINALIZER = "modelcanary.io/finalizer"


def model_deployment(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "left-over", "namespace": namespace, "finalizers": [FINALIZER]},
        "spec": {
            "predictor": {
                "model": {"name": "left-over", "version": "1.0.0", "uri": "s3://m/1.0.0"},
                "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
            },
            "traffic": {"replicas": {}},
            "strategy": {"steps": [{"setWeight": 50}, {"setWeight": 100}]},
        },
    }


def test_a_left_over_finalizer_is_released_when_the_namespace_goes(
    modelcanary_crds: list[str], k8s: kr8s.Api
) -> None:
    name = f"t-teardown-{secrets.token_hex(3)}"
    namespace = Namespace({"metadata": {"name": name}}, api=k8s)
    namespace.create()
    md = ModelDeployment(model_deployment(name), api=k8s)
    md.create()
    namespace.delete()
    md.refresh()
    assert md.raw["metadata"]["finalizers"] == [FINALIZER]  # what would keep it Terminating

    _release_finalized(k8s, name)

    try:
        md.refresh()
    except kr8s.NotFoundError:
        return  # gone already (a plane with a namespace controller deleted it at once)
    assert not md.raw["metadata"].get("finalizers")


def test_a_plane_without_the_crds_is_no_error(k8s: kr8s.Api) -> None:
    _release_finalized(k8s, f"t-absent-{secrets.token_hex(3)}")
