"""The generated CRDs on a real API server: what is refused at admission, and
how; what kubectl shows; and that the examples apply as they are."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import ControlPlane
from modelcanary.api import crd
from tests.api_cases import (
    INVALID_MODEL_DEPLOYMENTS,
    InvalidCase,
    invalid_manifest,
    valid_model_deployment,
)

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MD_PATH = "/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/modeldeployments"
DRILL_PATH = "/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/rollbackdrills"


def _create(
    plane: ControlPlane, namespace: str, manifest: dict[str, Any], *, dry_run: bool = True
) -> tuple[int, Any]:
    path = (MD_PATH if manifest["kind"] == "ModelDeployment" else DRILL_PATH).format(
        namespace=namespace
    )
    return plane.request("POST", path, manifest, {"dryRun": "All"} if dry_run else None)


def test_the_valid_fixture_is_admitted(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    status, body = _create(control_plane, namespace, valid_model_deployment(), dry_run=False)
    assert status == 201, body
    assert body["spec"]["strategy"]["steps"][3] == {"pause": {}}
    # Defaults from the models are applied by the API server itself.
    assert body["spec"]["revisionHistoryLimit"] == 10
    assert body["spec"]["traffic"]["gatewayAPI"]["create"] is False


@pytest.mark.parametrize("case", INVALID_MODEL_DEPLOYMENTS, ids=lambda case: case.id)
def test_invalid_manifest_is_refused_naming_the_field(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str, case: InvalidCase
) -> None:
    status, body = _create(control_plane, namespace, invalid_manifest(case))
    assert status == 422, body
    assert body["reason"] == "Invalid"
    causes = [cause.get("field", "") for cause in body["details"]["causes"]]
    assert case.field in causes, (case.field, body["message"])
    assert case.field in body["message"]


def test_cel_messages_are_ours(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    manifest = valid_model_deployment()
    manifest["spec"]["strategy"]["steps"] = [
        {"setWeight": 60},
        {"setWeight": 30},
        {"setWeight": 100},
    ]
    manifest["spec"]["traffic"]["replicas"] = {}
    status, body = _create(control_plane, namespace, manifest)
    assert status == 422
    assert "spec.strategy.steps: Invalid value" in body["message"]
    assert "setWeight values must not decrease from one step to the next" in body["message"]
    assert "exactly one router must be set: gatewayAPI or replicas" in body["message"]


def test_status_is_a_subresource(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    manifest = valid_model_deployment("with-status")
    status, created = _create(control_plane, namespace, manifest, dry_run=False)
    assert status == 201
    path = MD_PATH.format(namespace=namespace) + "/with-status"
    # A status sent with the main resource is dropped ...
    created["status"] = {"phase": "Healthy"}
    status, replaced = control_plane.request("PUT", path, created)
    assert status == 200, replaced
    assert "status" not in replaced
    # ... and accepted through /status, where its schema applies as well.
    replaced["status"] = {"phase": "Healthy", "canaryWeight": 0, "stableRevision": "abc"}
    status, updated = control_plane.request("PUT", path + "/status", replaced)
    assert status == 200, updated
    assert updated["status"]["phase"] == "Healthy"
    updated["status"]["phase"] = "Exploded"
    status, refused = control_plane.request("PUT", path + "/status", updated)
    assert status == 422
    assert "status.phase" in refused["message"]


def test_drill_spec_is_immutable(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    drill = {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "RollbackDrill",
        "metadata": {"name": "once"},
        "spec": {"modelDeployment": "fraud-detector", "mode": "verify"},
    }
    status, created = _create(control_plane, namespace, drill, dry_run=False)
    assert status == 201, created
    changed = copy.deepcopy(created)
    changed["spec"]["mode"] = "live"
    status, refused = control_plane.request(
        "PUT", DRILL_PATH.format(namespace=namespace) + "/once", changed
    )
    assert status == 422
    assert "spec is immutable" in refused["message"]
    bad = {**drill, "metadata": {"name": "bad"}, "spec": {"modelDeployment": "x", "mode": "chaos"}}
    status, refused = _create(control_plane, namespace, bad)
    assert status == 422
    assert "spec.mode" in refused["message"]


def test_examples_apply_and_kubectl_shows_the_printer_columns(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    applied = control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    assert applied.stdout.count("created") == len(list(EXAMPLES.glob("*.yaml")))
    table = control_plane.kubectl("get", "md", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "PHASE",
        "STEP",
        "WEIGHT",
        "STABLE",
        "CANARY",
        "LAST-KNOWN-GOOD",
        "AGE",
    ]
    assert sorted(line.split()[0] for line in table[1:]) == [
        "churn",
        "fraud-detector",
        "fraud-scorer",
        "ranker",
        "recommender",
        "sentiment",
    ]
    wide = control_plane.kubectl(
        "get", "md", "fraud-detector", "-n", namespace, "-o", "wide"
    ).stdout
    assert "fraud" in wide
    assert "1.5.0" in wide
    drills = control_plane.kubectl("get", "modelcanary", "-n", namespace, "-o", "name").stdout
    assert "rollbackdrill.modelcanary.io/fraud-detector-drill-manual" in drills


def test_kubectl_explain_describes_every_analysis_field(
    control_plane: ControlPlane, modelcanary_crds: list[str]
) -> None:
    explained = control_plane.kubectl("explain", "modeldeployment.spec.analysis").stdout
    spec = crd.custom_resource_definitions()["modelcanary.io_modeldeployments.yaml"]
    analysis = spec["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["analysis"]
    for name, field in analysis["properties"].items():
        assert re.search(rf"^\s+{name}\s+<", explained, re.MULTILINE), name
        first_words = " ".join(field["description"].split()[:3])
        assert first_words in " ".join(explained.split()), (name, first_words)
    recursive = control_plane.kubectl("explain", "md.spec", "--recursive").stdout
    assert "maxRelativeToStable" in recursive


def test_short_names_do_not_collide_with_other_resources(
    control_plane: ControlPlane, modelcanary_crds: list[str]
) -> None:
    ours = {"md", "mds", "drill", "drills"}
    taken: set[str] = set()
    _, groups = control_plane.request("GET", "/apis")
    versions = ["/api/v1"] + [
        f"/apis/{group['preferredVersion']['groupVersion']}" for group in groups["groups"]
    ]
    for version in versions:
        _, resources = control_plane.request("GET", version)
        for resource in resources["resources"]:
            if (
                resource.get("group", version).endswith("modelcanary.io")
                or "modelcanary.io" in version
            ):
                continue
            taken |= {resource["name"], resource.get("singularName", "")}
            taken |= set(resource.get("shortNames", []))
    assert ours.isdisjoint(taken), ours & taken
