"""A pass decides on its own copy of kopf's body: equal to it, sharing nothing that
an event arriving mid-pass could change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelcanary.kopf_tuning import json_copy

pytestmark = pytest.mark.unit

BODY = {
    "apiVersion": "modelcanary.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "labels": {"team": "risk"}, "generation": 3},
    "spec": {"predictor": {"replicas": 2, "template": {"spec": {"containers": [{"name": "s"}]}}}},
    "status": {"phase": "Healthy", "canaryWeight": 0.0, "paused": False, "history": [{"r": 1}]},
}


def test_the_copy_equals_the_body_and_shares_no_container() -> None:
    copied = json_copy(BODY)
    assert copied == BODY
    before = json.dumps(BODY, sort_keys=True)
    copied["metadata"]["labels"]["team"] = "other"
    copied["spec"]["predictor"]["template"]["spec"]["containers"].append({"name": "t"})
    copied["status"]["history"][0]["r"] = 2
    assert json.dumps(BODY, sort_keys=True) == before


def test_anything_but_json_is_deep_copied_all_the_same(tmp_path: Path) -> None:
    inner = {3}
    odd = {"path": tmp_path, "pair": [1, {"x": inner}]}
    copied = json_copy(odd)
    assert copied == odd
    copied["pair"][1]["x"].add(4)
    assert inner == {3}
