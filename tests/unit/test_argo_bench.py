"""The Argo Rollouts side of the scale bench: its objects, its predicates and its flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from bench.argo_scale import (
    STEPS,
    canary_paused_at_weight,
    canary_started,
    create_rollouts,
    namespace_of,
    remove_namespaces,
    rollout,
)
from bench.operator_scale import model_deployment
from e2e.harness.argo_rollouts import ARGO_USER, ArgoRolloutsController
from e2e.harness.binaries import ArgoRolloutsBinaries
from e2e.harness.kubernetes import ControlPlane
from modelcanary.ratelimit import DEFAULT_BURST, DEFAULT_QPS

pytestmark = pytest.mark.unit


def test_rollouts_match_the_scale_bench_model_deployments() -> None:
    argo = rollout("rollout-0001")
    ours = model_deployment("model-0001", "1.0.0", "replicas")["spec"]
    assert argo["spec"]["strategy"]["canary"]["steps"] == ours["strategy"]["steps"] == STEPS
    # No traffic router: the weight is a replica ratio, as with our replicas router.
    assert set(argo["spec"]["strategy"]["canary"]) == {"steps"}
    assert argo["spec"]["replicas"] == ours["predictor"]["replicas"] == 1
    assert argo["spec"]["template"]["spec"] == ours["predictor"]["template"]["spec"]
    labels = argo["spec"]["template"]["metadata"]["labels"]
    assert argo["spec"]["selector"]["matchLabels"] == labels
    # Both benches can share one cluster.
    assert namespace_of(3, 2) == "argo-1"


class RecordingClient:
    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []

    def must(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert method == "POST"
        self.posted.append((path, body))
        return body


@pytest.mark.parametrize("services", [False, True])
def test_a_service_beside_each_rollout_only_when_asked(services: bool) -> None:
    """``--argo-services``: the Service an Argo user applies with a Rollout, selecting
    its pods, as our replicas router's shared Service selects a model's."""
    client = RecordingClient()
    create_rollouts(cast(Any, client), 4, 2, workers=1, services=services)
    rollouts = [body for path, body in client.posted if body["kind"] == "Rollout"]
    made = [(path, body) for path, body in client.posted if body["kind"] == "Service"]
    assert len(rollouts) == 4
    assert len(made) == (4 if services else 0)
    for path, body in made:
        name = body["metadata"]["name"]
        (pods,) = [r for r in rollouts if r["metadata"]["name"] == name]
        assert path == f"/api/v1/namespaces/{namespace_of(int(name[-4:]), 2)}/services"
        assert body["spec"]["selector"] == pods["spec"]["template"]["metadata"]["labels"]


def _rollout(generation: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": status}


def test_canary_started_needs_the_new_generation_and_a_new_pod_hash() -> None:
    healthy = {"observedGeneration": "2", "currentPodHash": "a", "stableRS": "a"}
    assert not canary_started(_rollout(2, phase="Healthy", **healthy))
    # The controller has not seen the change yet.
    stale = {"observedGeneration": "1", "currentPodHash": "b", "stableRS": "a"}
    assert not canary_started(_rollout(2, phase="Progressing", **stale))
    moving = {"observedGeneration": "2", "currentPodHash": "b", "stableRS": "a"}
    assert canary_started(_rollout(2, phase="Progressing", **moving))
    assert not canary_paused_at_weight(_rollout(2, phase="Progressing", **moving))
    paused = _rollout(2, phase="Paused", currentStepIndex=1, **moving)
    assert canary_paused_at_weight(paused)


def test_controller_flags_make_the_comparison_fair(tmp_path: Path) -> None:
    binaries = ArgoRolloutsBinaries(tmp_path / "rollouts-controller", tmp_path / "crds", "v1")
    plane = ControlPlane(cast(Any, None), tmp_path / "plane")
    controller = ArgoRolloutsController(binaries, plane, tmp_path)
    controller.metrics_port, controller.healthz_port = 18090, 18080
    argv = controller.argv(tmp_path / "argo.kubeconfig")
    assert controller.user == ARGO_USER
    assert f"--qps={DEFAULT_QPS:g}" in argv
    assert f"--burst={DEFAULT_BURST}" in argv
    assert "--leader-elect=false" in argv
    assert "--metricsPort=18090" in argv
    assert "--healthzPort=18080" in argv
    assert not any(flag.startswith("--namespaced") for flag in argv)
    with_election = ArgoRolloutsController(binaries, plane, tmp_path, leader_elect=True)
    assert "--leader-elect=true" in with_election.argv(tmp_path / "k")


class NamespacesGoingAway:
    """Each namespace answers 200 to its first GET after the DELETE, then 404."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, path))
        if method == "DELETE":
            return (403, {}) if self.refuse else (200, {})
        return (200, {}) if self.calls.count((method, path)) == 1 else (404, {})


def test_argo_namespaces_are_deleted_and_waited_for_before_ours_runs() -> None:
    client = NamespacesGoingAway()
    remove_namespaces(cast(Any, client), 2, timeout=30, interval=0.01)
    deleted = [path for method, path in client.calls if method == "DELETE"]
    assert deleted == ["/api/v1/namespaces/argo-0", "/api/v1/namespaces/argo-1"]
    # It returned only after each namespace answered 404.
    assert client.calls[-2:] == [
        ("GET", "/api/v1/namespaces/argo-0"),
        ("GET", "/api/v1/namespaces/argo-1"),
    ]


def test_a_refused_delete_is_an_error_not_a_wait() -> None:
    with pytest.raises(RuntimeError, match="HTTP 403"):
        remove_namespaces(cast(Any, NamespacesGoingAway(refuse=True)), 2, timeout=30)
