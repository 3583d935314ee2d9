"""The pure manifest builders: names, labels, selectors, env injection and ownership.

Plain values in, plain dicts out: no fakes. What matters most is what must
never change for a revision (its selector and pod template, whatever its
role) and what must never be touched (the user's predictor).
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.api.modeldeployment import (
    Predictor,
)
from modelcanary.api.names import LABEL_MODEL
from modelcanary.workloads import builders
from modelcanary.workloads.builders import (
    ANNOTATION_AUTOSCALER_HASH,
    ANNOTATION_MODEL_URI,
    ANNOTATION_TEMPLATE_HASH,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_REVISION,
    LABEL_ROLE,
    LABEL_VERSION,
    OwnerRef,
    build_autoscaler_spec,
    build_deployment_spec,
    build_service_spec,
    build_shared_service_spec,
    revision_name,
    revision_of,
    shared_service_name,
)

pytestmark = pytest.mark.unit

OWNER = OwnerRef(
    api_version="modelcanary.io/v1alpha1", kind="ModelDeployment", name="fraud", uid="uid-1"
)
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def predictor(**template_spec: Any) -> Predictor:
    container: dict[str, Any] = {
        "name": "server",
        "image": "server:1",
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "MODEL_URI", "value": "file:///stale"},
            {"name": "CACHE", "value": "$(MODEL_URI)/cache"},
        ],
        "ports": [{"name": "metrics", "containerPort": 9100}],
    }
    return Predictor.model_validate(
        {
            "model": {"name": "fraud", "version": "1.5.0", "uri": "s3://models/fraud/1.5.0"},
            "replicas": 3,
            "template": {
                "metadata": {
                    "labels": {"team": "risk", LABEL_REVISION: "spoofed"},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {
                    "containers": [container, {"name": "sidecar", "image": "proxy:1"}],
                    "nodeSelector": {"pool": "gpu"},
                    **template_spec,
                },
            },
        }
    )


def deployment(
    pred: Predictor | None = None, *, role: Any = "stable", replicas: int = 2, port: int = 8080
) -> dict[str, Any]:
    pred = pred or predictor()
    return build_deployment_spec(
        md_name="fraud",
        namespace="ml",
        revision=pred.revision(),
        predictor=pred,
        replicas=replicas,
        role=role,
        port=port,
        owner=OWNER,
    )


def service(pred: Predictor | None = None, *, role: Any = "stable") -> dict[str, Any]:
    pred = pred or predictor()
    return build_service_spec(
        md_name="fraud",
        namespace="ml",
        revision=pred.revision(),
        predictor=pred,
        role=role,
        port=8080,
        owner=OWNER,
    )


def env_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


# --------------------------------------------------------------------------- names


def test_revision_name_is_md_name_dash_revision() -> None:
    assert revision_name("fraud-detector", "6f9c0a1b2c") == "fraud-detector-6f9c0a1b2c"


def test_a_long_name_is_shortened_and_keeps_the_whole_revision() -> None:
    md_name = "a-very-long-model-deployment-name-that-goes-on-and-on-and-on-forever"
    name = revision_name(md_name, "6f9c0a1b2c")
    assert len(name) == 63
    assert name.endswith("-6f9c0a1b2c")
    assert name.startswith("a-very-long-model-deployment-name")
    assert DNS_1035_LABEL.fullmatch(name)
    # Two long names that share their first 60 characters still get two names.
    other = revision_name(md_name + "-2", "6f9c0a1b2c")
    assert other != name
    assert len(other) == 63


@given(
    md_name=st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", fullmatch=True),
    revision=st.from_regex(r"[0-9a-f]{10}", fullmatch=True),
)
def test_every_subdomain_name_gives_a_service_name_that_maps_back(
    md_name: str, revision: str
) -> None:
    name = revision_name(md_name, revision)
    assert len(name) <= 63
    assert DNS_1035_LABEL.fullmatch(name), name
    assert name.endswith("-" + revision)
    assert revision_of(md_name, name) == revision


def test_revision_of_refuses_names_of_other_models() -> None:
    assert revision_of("fraud", "fraud-6f9c0a1b2c") == "6f9c0a1b2c"
    assert revision_of("fraud", "fraudster-6f9c0a1b2c") is None
    assert revision_of("fraud", "user-backend") is None
    assert revision_of("fraud", "fraud") is None


def test_names_that_are_not_service_names_are_made_into_one() -> None:
    assert DNS_1035_LABEL.fullmatch(revision_name("my.model", "abc"))
    assert DNS_1035_LABEL.fullmatch(revision_name("2024-fraud", "abc"))
    assert revision_name("my.model", "abc") != revision_name("my-model", "abc")
    assert shared_service_name("fraud") == "fraud"
    assert shared_service_name("fraud", "fraud-all") == "fraud-all"


def test_a_revision_that_is_not_a_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="lowercase alphanumeric"):
        revision_name("fraud", "Not-A-Hash")


# --------------------------------------------------------------------------- labels


def test_deployment_metadata_carries_every_label_and_the_model_uri() -> None:
    pred = predictor()
    manifest = deployment(pred, role="canary")
    metadata = manifest["metadata"]
    assert metadata["name"] == f"fraud-{pred.revision()}"
    assert metadata["namespace"] == "ml"
    assert metadata["labels"] == {
        LABEL_MODEL: "fraud",
        LABEL_REVISION: pred.revision(),
        LABEL_ROLE: "canary",
        LABEL_MANAGED_BY: "modelcanary",
        LABEL_NAME: "fraud",
        LABEL_VERSION: "1.5.0",
    }
    assert metadata["annotations"][ANNOTATION_MODEL_URI] == "s3://models/fraud/1.5.0"
    assert manifest["spec"]["revisionHistoryLimit"] == 2
    assert manifest["spec"]["replicas"] == 2


def test_selector_and_pod_template_do_not_depend_on_the_role() -> None:
    stable, canary = deployment(role="stable"), deployment(role="canary")
    assert stable["spec"] == canary["spec"]
    assert (
        stable["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
        == canary["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
    )
    assert stable["metadata"]["labels"][LABEL_ROLE] == "stable"
    assert canary["metadata"]["labels"][LABEL_ROLE] == "canary"
    assert LABEL_ROLE not in stable["spec"]["template"]["metadata"]["labels"]


def test_replicas_do_not_change_the_template_hash() -> None:
    one, five = deployment(replicas=1), deployment(replicas=5)
    assert one["spec"]["template"] == five["spec"]["template"]
    assert (
        one["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
        == five["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
    )


def test_selector_is_model_and_revision_and_wins_over_the_users_labels() -> None:
    pred = predictor()
    manifest = deployment(pred)
    selector = {LABEL_MODEL: "fraud", LABEL_REVISION: pred.revision()}
    assert manifest["spec"]["selector"] == {"matchLabels": selector}
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels == {"team": "risk", **selector}
    annotations = manifest["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role"):
        deployment(role="primary")


def test_a_new_predictor_changes_the_template_hash() -> None:
    first = deployment(predictor())
    second = deployment(predictor(serviceAccountName="other"))
    assert (
        first["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
        != second["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
    )


# --------------------------------------------------------------------------- pod spec


def test_model_env_comes_first_and_replaces_same_named_entries() -> None:
    pred = predictor()
    env = env_of(deployment(pred))
    assert env == [
        {"name": "MODEL_NAME", "value": "fraud"},
        {"name": "MODEL_VERSION", "value": "1.5.0"},
        {"name": "MODEL_URI", "value": "s3://models/fraud/1.5.0"},
        {"name": "MODEL_REVISION", "value": pred.revision()},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "CACHE", "value": "$(MODEL_URI)/cache"},
    ]


def test_only_the_first_container_is_the_model_server() -> None:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert containers[1] == {"name": "sidecar", "image": "proxy:1"}


def test_the_http_port_is_added_beside_the_users_ports() -> None:
    ports = deployment(port=8080)["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [
        {"name": "metrics", "containerPort": 9100},
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
    ]


def test_an_unnamed_serving_port_is_named_http_not_duplicated() -> None:
    pred = predictor()
    raw = pred.to_dict()
    raw["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
    ports = deployment(Predictor.model_validate(raw))["spec"]["template"]["spec"]["containers"][0][
        "ports"
    ]
    assert ports == [{"containerPort": 8080, "name": "http"}]


def test_a_port_named_http_elsewhere_is_refused() -> None:
    raw = predictor().to_dict()
    raw["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 9000}]
    with pytest.raises(ValueError, match=r"traffic\.port is 8080"):
        deployment(Predictor.model_validate(raw))


def test_the_rest_of_the_users_pod_spec_is_kept() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["containers"][0]["image"] == "server:1"


def test_the_predictor_is_never_changed() -> None:
    pred = predictor()
    before = copy.deepcopy(pred.model_dump())
    manifest = deployment(pred)
    assert pred.model_dump() == before
    # The manifest holds copies: changing it cannot reach back into the predictor.
    manifest["spec"]["template"]["spec"]["containers"][0]["env"].clear()
    manifest["spec"]["template"]["metadata"]["labels"]["team"] = "changed"
    assert pred.model_dump() == before
    assert deployment(pred) == deployment(predictor())


# --------------------------------------------------------------------------- owners and services


def test_every_object_is_controlled_by_the_model_deployment() -> None:
    expected = [
        {
            "apiVersion": "modelcanary.io/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fraud",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    shared = build_shared_service_spec(md_name="fraud", namespace="ml", port=8080, owner=OWNER)
    for manifest in (deployment(), service(), shared):
        assert manifest["metadata"]["ownerReferences"] == expected


def test_revision_service_selects_one_revision_on_the_http_port() -> None:
    pred = predictor()
    manifest = service(pred, role="canary")
    assert manifest["metadata"]["name"] == f"fraud-{pred.revision()}"
    assert manifest["metadata"]["labels"][LABEL_ROLE] == "canary"
    assert manifest["spec"] == {
        "type": "ClusterIP",
        "selector": {LABEL_MODEL: "fraud", LABEL_REVISION: pred.revision()},
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}],
    }
    assert service(pred, role="stable")["spec"] == manifest["spec"]


def test_shared_service_selects_every_revision() -> None:
    manifest = build_shared_service_spec(
        md_name="fraud", namespace="ml", port=9000, owner=OWNER, name="fraud-all"
    )
    assert manifest["metadata"]["name"] == "fraud-all"
    assert manifest["spec"]["selector"] == {LABEL_MODEL: "fraud"}
    assert manifest["spec"]["ports"][0]["port"] == 9000
    assert LABEL_REVISION not in manifest["metadata"]["labels"]
    assert LABEL_ROLE not in manifest["metadata"]["labels"]


def test_a_long_model_name_still_makes_valid_labels() -> None:
    md_name = "m" * 100
    manifest = build_deployment_spec(
        md_name=md_name,
        namespace="ml",
        revision="abc",
        predictor=predictor(),
        replicas=1,
        role="stable",
        port=8080,
        owner=OWNER,
    )
    for value in manifest["metadata"]["labels"].values():
        assert len(value) <= 63
        assert LABEL_VALUE.fullmatch(value), value
    assert manifest["spec"]["selector"]["matchLabels"][LABEL_MODEL].startswith("mmmm")


def test_the_builders_import_nothing_that_does_io() -> None:
    source = Path(builders.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {
        "__future__",
        "copy",
        "hashlib",
        "json",
        "re",
        "collections",
        "dataclasses",
        "typing",
        "modelcanary",
    }, imported
    assert not {"kopf", "kr8s", "kubernetes", "httpx", "asyncio"} & imported


# --------------------------------------------------------------------------- autoscaler

CPU_70 = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
}


def autoscaled(**autoscaling: Any) -> Predictor:
    raw = predictor().to_dict()
    raw["autoscaling"] = {"minReplicas": 2, "maxReplicas": 8, **autoscaling}
    return Predictor.model_validate(raw)


def hpa(p: Predictor, *, role: Literal["stable", "canary"] = "canary", minimum: int = 3) -> Any:
    return build_autoscaler_spec(
        md_name="fraud",
        namespace="models",
        revision="abc123",
        predictor=p,
        role=role,
        min_replicas=minimum,
        owner=OWNER,
    )


def test_autoscaler_aims_at_the_revisions_deployment_owned_and_labelled_like_it() -> None:
    p = autoscaled(metrics=[CPU_70])
    built = hpa(p, minimum=3)
    deployment = build_deployment_spec(
        md_name="fraud",
        namespace="models",
        revision="abc123",
        predictor=p,
        replicas=1,
        role="canary",
        port=8080,
        owner=OWNER,
    )
    assert built["apiVersion"] == "autoscaling/v2"
    assert built["metadata"]["name"] == deployment["metadata"]["name"]
    assert built["metadata"]["labels"] == deployment["metadata"]["labels"]
    assert built["metadata"]["ownerReferences"] == deployment["metadata"]["ownerReferences"]
    assert built["spec"] == {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        },
        "minReplicas": 3,
        "maxReplicas": 8,
        "metrics": [CPU_70],
    }


def test_autoscaler_without_metrics_leaves_the_default_to_the_api_server() -> None:
    assert "metrics" not in hpa(autoscaled())["spec"]


def test_autoscaler_hash_ignores_the_floor_and_role_but_not_max_or_metrics() -> None:
    def digest(built: dict[str, Any]) -> str:
        return str(built["metadata"]["annotations"][ANNOTATION_AUTOSCALER_HASH])

    base = digest(hpa(autoscaled(), minimum=2))
    assert digest(hpa(autoscaled(), minimum=7, role="stable")) == base
    assert digest(hpa(autoscaled(maxReplicas=9))) != base
    assert digest(hpa(autoscaled(metrics=[CPU_70]))) != base


@pytest.mark.parametrize("minimum", [0, 9])
def test_autoscaler_refuses_a_floor_outside_one_to_max(minimum: int) -> None:
    with pytest.raises(ValueError, match="minReplicas"):
        hpa(autoscaled(), minimum=minimum)


def test_autoscaler_needs_a_predictor_with_autoscaling() -> None:
    with pytest.raises(ValueError, match="no autoscaling"):
        hpa(predictor())
