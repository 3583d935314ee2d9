"""The largest ModelDeployment the models accept is stored by the real etcd; etcd's
limit is real, so one over it could never be written again.

``api/size.py`` promises that any accepted spec's object, grown to its worst case
(a full history of its predictor with evidence, the judge's memory full for every
count metric), fits. Here that worst case goes through the real API server into
the real etcd, and so does a status over the limit, which is refused.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from e2e.harness import ControlPlane
from modelcanary.api import size
from tests.size_cases import object_bytes, padded_manifest, worst_status
from tests.unit.api.test_size import _largest_accepted_template

pytestmark = pytest.mark.integration
MD_PATH = "/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/modeldeployments"


def _store(
    plane: ControlPlane, namespace: str, manifest: dict[str, Any], status: dict[str, Any]
) -> tuple[int, Any]:
    """Create the object as ``kubectl apply`` would, then write ``status`` to it."""
    body = copy.deepcopy(manifest)
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(manifest)
    }
    path = MD_PATH.format(namespace=namespace)
    code, created = plane.request("POST", path, body)
    assert code == 201, created
    created["status"] = status
    return plane.request("PUT", f"{path}/{manifest['metadata']['name']}/status", created)


def test_the_largest_accepted_spec_at_its_worst_is_stored_by_etcd(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    manifest = padded_manifest(limit=100, template_bytes=_largest_accepted_template(100))
    status = worst_status(manifest)
    assert object_bytes(manifest, status) > size.OBJECT_BUDGET / 2
    code, stored = _store(control_plane, namespace, manifest, status)
    assert code == 200, str(stored)[:500]
    assert len(stored["status"]["history"]) == 100 + size.IN_USE_ENTRIES
    assert stored["status"]["analysis"]["judgements"] == status["analysis"]["judgements"]


def test_a_status_over_etcds_limit_is_refused_by_the_real_server(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    # What the bound exists to prevent: a long history of a large template, grown a
    # little past etcd's limit (well past it, the API server's own gRPC limit refuses
    # first, with another message).
    def grown(padding: int) -> tuple[dict[str, Any], dict[str, Any]]:
        manifest = padded_manifest(limit=10, template_bytes=padding, name="too-big")
        status = worst_status(manifest)
        entry = status["history"][0]
        status["history"] = [{**entry, "revision": f"{i:010d}"} for i in range(104)]
        return manifest, status

    padding = 0
    while object_bytes(*grown(padding)) <= size.ETCD_REQUEST_LIMIT + 64 * 1024:
        padding += 1024
    manifest, status = grown(padding)
    assert object_bytes(manifest, status) < size.ETCD_REQUEST_LIMIT + 256 * 1024
    code, refused = _store(control_plane, namespace, manifest, status)
    assert code >= 400, "etcd stored an object over its limit"
    assert "request is too large" in refused["message"], refused
