"""The generated CRDs are structural, documented, and committed as generated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from modelcanary.api import crd

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
CRD_DIRS = [REPO / "crds", REPO / "charts" / "modelcanary" / "crds"]


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, definition in crd.custom_resource_definitions().items():
        yield name, definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("directory", CRD_DIRS, ids=lambda d: str(d.relative_to(REPO)))
def test_committed_crds_match_what_the_models_generate(directory: Path) -> None:
    stale = crd.write([directory], check=True)
    assert stale == [], "run `make crds`: the committed CRDs differ from the models"
    assert sorted(p.name for p in directory.glob("*.yaml")) == sorted(
        crd.custom_resource_definitions()
    )


def test_drift_check_notices_a_hand_edit(tmp_path: Path) -> None:
    crd.write([tmp_path])
    target = tmp_path / "modelcanary.io_modeldeployments.yaml"
    target.write_text(target.read_text().replace("maximum: 100", "maximum: 101", 1))
    assert crd.write([tmp_path], check=True) == [target]
    assert crd.main([str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize(("name", "schema"), list(_schemas()))
def test_schema_is_structural(name: str, schema: dict[str, Any]) -> None:
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "$defs", "title:", "const:"):
        assert forbidden not in text, f"{name}: {forbidden}"
    for path, node in _walk(schema, name):
        assert "type" in node, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        assert not isinstance(node.get("exclusiveMinimum"), (int, float)) or isinstance(
            node["exclusiveMinimum"], bool
        ), path


@pytest.mark.parametrize(("name", "schema"), list(_schemas()))
def test_every_field_has_a_description_for_kubectl_explain(
    name: str, schema: dict[str, Any]
) -> None:
    undocumented = [
        path
        for path, node in _walk(schema, name)
        if not path.endswith(".metadata")
        and not node.get("description")
        and not path.endswith("[]")
        and not path.endswith(".*")
    ]
    assert undocumented == []


def test_free_form_is_limited_to_the_pod_template() -> None:
    free_form = [
        path
        for name, schema in _schemas()
        for path, node in _walk(schema, name)
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert free_form
    # An HPA MetricSpec is passed to the HorizontalPodAutoscaler as written
    # (only its type is checked), as the pod template is passed to the Deployment.
    allowed = (
        "template.metadata",
        "template.spec",
        "template.spec.containers[]",
        "autoscaling.metrics[]",
    )
    assert all(path.endswith(allowed) for path in free_form), free_form


def test_nullable_replaces_null_unions() -> None:
    _, schema = next(_schemas())
    replicas = schema["properties"]["spec"]["properties"]["traffic"]["properties"]["replicas"]
    assert replicas["nullable"] is True
    assert replicas["type"] == "object"


def test_printer_columns_and_names() -> None:
    definitions = crd.custom_resource_definitions()
    model_deployment = definitions["modelcanary.io_modeldeployments.yaml"]["spec"]
    columns = [c["name"] for c in model_deployment["versions"][0]["additionalPrinterColumns"]]
    assert columns[:7] == ["Phase", "Step", "Weight", "Stable", "Canary", "Last-Known-Good", "Age"]
    assert model_deployment["names"]["shortNames"] == ["md", "mds"]
    assert model_deployment["names"]["categories"] == ["modelcanary"]
    assert model_deployment["versions"][0]["subresources"] == {"status": {}}


def test_a_union_without_a_structural_form_is_refused() -> None:
    class Ambiguous(BaseModel):
        value: int | str

    with pytest.raises(crd.SchemaError, match="Ambiguous"):
        crd.structural_schema(Ambiguous)
