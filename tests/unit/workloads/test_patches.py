"""The HPA's JSON patch: from an HPA as the API server returns it to the one built."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelcanary.api.modeldeployment import Predictor
from modelcanary.workloads.builders import OwnerRef, build_autoscaler_spec
from modelcanary.workloads.patches import autoscaler_ops

pytestmark = pytest.mark.unit

OWNER = OwnerRef(api_version="modelcanary.io/v1alpha1", kind="ModelDeployment", name="m", uid="u")
PREDICTOR = Predictor.model_validate(
    {
        "model": {"name": "m", "version": "1", "uri": "s3://m/1"},
        "template": {"spec": {"containers": [{"name": "s", "image": "s:1"}]}},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 10},
    }
)


def built(minimum: int = 2) -> dict[str, Any]:
    return build_autoscaler_spec(
        md_name="m",
        namespace="ns",
        revision="abc",
        predictor=PREDICTOR,
        role="stable",
        min_replicas=minimum,
        owner=OWNER,
    )


def stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server hands back: a uid, and the default metric filled in."""
    hpa = copy.deepcopy(manifest)
    hpa["metadata"]["uid"] = "hpa-uid"
    hpa["spec"]["metrics"] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    return hpa


def test_the_defaulted_hpa_needs_no_patch() -> None:
    assert autoscaler_ops(stored(built()), built()) == []


def test_a_new_floor_patches_only_min_replicas() -> None:
    ops = autoscaler_ops(stored(built(2)), built(5))
    assert ops[1:] == [{"op": "replace", "path": "/spec/minReplicas", "value": 5}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("maxReplicas", 50),
        ("scaleTargetRef", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}),
    ],
)
def test_a_hand_edited_target_or_maximum_is_put_back(field: str, value: Any) -> None:
    edited = stored(built())
    edited["spec"][field] = value
    ops = autoscaler_ops(edited, built())
    assert ops[1:] == [{"op": "replace", "path": "/spec", "value": built()["spec"]}]
