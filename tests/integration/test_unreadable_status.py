"""A status edited by hand into a shape the models refuse, against the real API server.

The API server checks the status against the CRD's schema, but Go's
``date-time`` accepts year 0000 where Python's does not: such a status gets
through admission and used to raise out of every pass. Here a person writes
it through the status subresource, as ``kubectl edit --subresource=status``
would, and a pass runs on what the API server then returns.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kr8s
import kr8s.asyncio
import pytest
from kr8s.objects import Deployment, new_class

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import ModelDeploymentStatus, Predictor
from modelcanary.reconcile import PassResult, Reconciler
from modelcanary.workloads.builders import revision_name

pytestmark = pytest.mark.integration

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)

YEAR_ZERO = "0000-01-01T00:00:00Z"
"""A date-time the CRD's schema accepts and the models refuse."""

PREDICTOR: dict[str, Any] = {
    "model": {"name": "sentiment", "version": "1.0.0", "uri": "s3://models/sentiment/1.0.0"},
    "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
}
OLD_PREDICTOR: dict[str, Any] = {
    **PREDICTOR,
    "model": {**PREDICTOR["model"], "version": "0.9.0", "uri": "s3://models/sentiment/0.9.0"},
}
STABLE = Predictor.model_validate(PREDICTOR).revision()
OLD = Predictor.model_validate(OLD_PREDICTOR).revision()


def healthy_status() -> dict[str, Any]:
    """What an operator writes once the spec's revision is stable, with an older one before it."""
    return {
        "phase": "Healthy",
        "message": f"revision {STABLE} is stable",
        "stableRevision": STABLE,
        "lastKnownGood": {
            "revision": STABLE,
            "model": PREDICTOR["model"],
            "promotedAt": "2026-11-23T10:01:00Z",
        },
        "history": [
            {
                "revision": STABLE,
                "predictor": PREDICTOR,
                "outcome": "Promoted",
                "createdAt": "2026-11-23T10:00:00Z",
                "finishedAt": "2026-11-23T10:01:00Z",
            },
            {
                "revision": OLD,
                "predictor": OLD_PREDICTOR,
                "outcome": "Promoted",
                "createdAt": "2026-11-23T09:00:00Z",
                "finishedAt": "2026-11-23T09:01:00Z",
            },
        ],
    }


@pytest.fixture
def sentiment(modelcanary_crds: list[str], k8s: kr8s.Api, namespace: str) -> Any:
    md = ModelDeployment(
        {
            "apiVersion": "modelcanary.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "sentiment", "namespace": namespace},
            "spec": {
                "predictor": copy.deepcopy(PREDICTOR),
                "traffic": {"replicas": {}},
                "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
            },
        },
        api=k8s,
    )
    md.create()
    return md


def edit_status(md: Any, status: dict[str, Any]) -> dict[str, Any]:
    """Write ``status`` by hand; the status as the API server stored it."""
    md.patch({"status": status}, subresource="status", type="merge")
    md.refresh()
    return copy.deepcopy(md.raw["status"])


def one_pass(plane: ControlPlane, md: Any) -> PassResult:
    md.refresh()
    obj = copy.deepcopy(md.raw)

    async def main() -> PassResult:
        api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
        return await Reconciler(api).run_pass(obj)

    result = asyncio.run(main())
    md.refresh()
    return result


def read(status: dict[str, Any]) -> dict[str, Any]:
    return ModelDeploymentStatus.model_validate(status).to_dict()


def condition(md: Any, kind: str) -> dict[str, Any]:
    found = [c for c in md.raw["status"].get("conditions", []) if c["type"] == kind]
    assert len(found) == 1, md.raw["status"].get("conditions")
    return dict(found[0])


def deployment_exists(k8s: kr8s.Api, namespace: str, revision: str) -> bool:
    try:
        Deployment.get(revision_name("sentiment", revision), namespace=namespace, api=k8s)
    except kr8s.NotFoundError:
        return False
    return True


def test_unreadable_history_is_kept_named_and_nothing_changes_until_it_is_fixed(
    control_plane: ControlPlane, sentiment: Any, k8s: kr8s.Api, namespace: str
) -> None:
    broken = healthy_status()
    broken["history"][1]["createdAt"] = YEAR_ZERO
    stored = edit_status(sentiment, broken)

    result = one_pass(control_plane, sentiment)

    assert result.decision.actions == ()
    assert result.status_written
    invalid = condition(sentiment, "InvalidStatus")
    assert invalid["status"] == "True"
    assert "status.history[1].createdAt" in invalid["message"]
    assert "year 0" in invalid["message"]
    assert [e.reason for e in result.decision.events] == ["InvalidStatus"]
    after = sentiment.raw["status"]
    # The memory the models cannot read is kept exactly as the person left it.
    for field in ("history", "lastKnownGood", "stableRevision", "phase"):
        assert after[field] == stored[field], field
    assert after["message"].startswith("status unreadable, nothing is changed")
    # Nothing in the cluster was touched: the stable revision's Deployment is not (re)made.
    assert not deployment_exists(k8s, namespace, STABLE)

    again = one_pass(control_plane, sentiment)
    assert again.decision.actions == ()
    assert not again.status_written, "an unchanged unsound status is not written again"
    assert again.decision.events == (), "the same problem is not announced every pass"

    fixed = copy.deepcopy(sentiment.raw["status"]["history"])
    fixed[1]["createdAt"] = "2026-11-23T09:00:00Z"
    edit_status(sentiment, {"history": fixed})
    repaired = one_pass(control_plane, sentiment)

    assert condition(sentiment, "InvalidStatus")["status"] == "False"
    assert deployment_exists(k8s, namespace, STABLE), repaired.failed
    assert [e["revision"] for e in sentiment.raw["status"]["history"]] == [STABLE, OLD]
    assert sentiment.raw["status"]["lastKnownGood"]["revision"] == STABLE


def test_an_unreadable_report_is_reset_and_the_pass_repairs_it(
    control_plane: ControlPlane, sentiment: Any, k8s: kr8s.Api, namespace: str
) -> None:
    broken = healthy_status()
    broken["lastAction"] = {"id": "a1", "action": "pause", "accepted": True, "at": YEAR_ZERO}
    stored = edit_status(sentiment, broken)
    stored.pop("lastAction")

    result = one_pass(control_plane, sentiment)

    invalid = condition(sentiment, "InvalidStatus")
    assert invalid["status"] == "True"
    assert invalid["reason"] == "Repaired"
    assert "status.lastAction.at" in invalid["message"]
    after = sentiment.raw["status"]
    assert "lastAction" not in after
    # Rewritten in the models' own form (defaults filled in), and otherwise the same.
    assert read(after)["history"] == read(stored)["history"]
    assert read(after)["lastKnownGood"] == read(stored)["lastKnownGood"]
    # The rest was sound, so the pass did its ordinary work.
    assert deployment_exists(k8s, namespace, STABLE), result.failed

    one_pass(control_plane, sentiment)
    cleared = condition(sentiment, "InvalidStatus")
    assert cleared["status"] == "False"
    assert cleared["reason"] == "Readable"
