"""The pass skeleton both passes share, driven over a fake API at the network edge.

The glue between a decision and the cluster (actions in order, stopping at the
first failure; one status write, none when nothing changed; the manual action
cleared by id) had no test below e2e. Here the real ``Reconciler`` and
``DrillExecutor`` run over kr8s whose HTTP goes to ``FakeKube`` (a few API
endpoints in memory), with the router and Prometheus factories injected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from modelcanary.api.modeldeployment import Predictor
from modelcanary.drill_executor import DrillExecutor
from modelcanary.passes import ModelDeploymentResource as MDResource
from modelcanary.passes import PassState, carry_out_in_order, clear_action, write_status
from modelcanary.reconcile import Reconciler
from modelcanary.rollout.actions import ANNOTATION, ANNOTATION_ID
from modelcanary.rollout.decision import Action, ScaleRevision, SetWeights
from modelcanary.rollout.observations import RouterObservation
from tests.unit.fake_kube import Failure, FakeKube

pytestmark = pytest.mark.unit

NS = "ns"
MD_PATH = f"/apis/modelcanary.io/v1alpha1/namespaces/{NS}/modeldeployments/fraud"
DRILL_PATH = f"/apis/modelcanary.io/v1alpha1/namespaces/{NS}/rollbackdrills/drill-1"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def predictor(version: str) -> dict[str, Any]:
    return {
        "model": {"name": "fraud", "version": version, "uri": f"s3://m/{version}"},
        "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
    }


OLD, NEW = predictor("1.0.0"), predictor("1.1.0")
A = Predictor.model_validate(OLD).revision()
B = Predictor.model_validate(NEW).revision()


def entry(revision: str, raw: dict[str, Any], outcome: str, at: str) -> dict[str, Any]:
    return {"revision": revision, "predictor": raw, "outcome": outcome, "createdAt": at}


def serving(revision: str, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": "Healthy",
        "stableRevision": revision,
        "lastKnownGood": {
            "revision": revision,
            "model": raw["model"],
            "promotedAt": "2026-11-27T10:00:00Z",
        },
        "history": [entry(revision, raw, "Promoted", "2026-11-27T09:59:00Z")],
    }


def available_deployment(revision: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"fraud-{revision}",
            "namespace": NS,
            "generation": 1,
            "labels": {"modelcanary.io/model": "fraud", "modelcanary.io/revision": revision},
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


@dataclass
class FakeRouter:
    """The router the factory hands out: weights in memory, failures on demand."""

    weights: dict[str, int] | None = None
    unreadable: str | None = None
    refuses: str | None = None
    asked: list[dict[str, int]] = field(default_factory=list)

    async def ensure(self) -> None:
        pass

    async def get_weight(self) -> RouterObservation:
        if self.unreadable:
            raise OSError(self.unreadable)
        return RouterObservation(weights=dict(self.weights) if self.weights is not None else None)

    async def set_weight(self, weights: Mapping[str, int]) -> None:
        self.asked.append(dict(weights))
        if self.refuses:
            raise OSError(self.refuses)
        self.weights = dict(weights)

    async def finalize(self) -> None:
        pass


@dataclass
class Cluster:
    """One ModelDeployment in a fake API, with its router; passes run as the operator runs them."""

    kube: FakeKube = field(default_factory=FakeKube)
    router: FakeRouter = field(default_factory=FakeRouter)

    def __post_init__(self) -> None:
        self.api = self.kube.api()
        self.reconciler = Reconciler(self.api, routers=lambda *_, **__: self.router)

    def model_deployment(
        self,
        raw: dict[str, Any],
        status: dict[str, Any] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.kube.put(
            MD_PATH,
            {
                "apiVersion": "modelcanary.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {
                    "name": "fraud",
                    "namespace": NS,
                    "generation": 1,
                    "annotations": annotations or {},
                },
                "spec": {
                    "predictor": raw,
                    "traffic": {"port": 8080, "gatewayAPI": {"httpRoute": "fraud"}},
                    "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
                },
                "status": status or {},
            },
        )

    def deployment(self, revision: str, replicas: int = 1) -> None:
        self.kube.put(f"{DEPLOYMENTS}/fraud-{revision}", available_deployment(revision, replicas))

    def md_pass(self, obj: dict[str, Any] | None = None) -> Any:
        return asyncio.run(self.reconciler.run_pass(obj or self.kube.get(MD_PATH), now=NOW))

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get(MD_PATH).get("status") or {})


# -- the skeleton's parts, one table each ---------------------------------------------


@pytest.mark.parametrize(
    ("failing", "applied", "tried"),
    [(None, 3, 3), (0, 0, 1), (1, 1, 2), (2, 2, 3)],
    ids=["all-succeed", "first-fails", "second-fails", "last-fails"],
)
def test_actions_run_in_order_and_stop_at_the_first_failure(
    failing: int | None, applied: int, tried: int
) -> None:
    actions: list[Action] = [
        ScaleRevision("a", 1),
        SetWeights.of({"a": 100}),
        ScaleRevision("b", 0),
    ]
    calls: list[Action] = []

    async def carry_out(action: Action) -> None:
        calls.append(action)
        if failing is not None and action == actions[failing]:
            raise OSError("connection refused")

    state = PassState()
    asyncio.run(carry_out_in_order(actions, carry_out, state, who="ns/fraud"))
    assert calls == actions[:tried]
    assert state.applied == actions[:applied]
    assert state.failed == (None if failing is None else (actions[failing], "connection refused"))


@pytest.mark.parametrize(
    ("stored", "wanted", "written"),
    [
        ({"phase": "Healthy"}, {"phase": "Healthy"}, None),
        ({}, {}, None),
        ({"phase": "Healthy"}, {"phase": "Progressing"}, {"phase": "Progressing"}),
        ({"phase": "Healthy", "paused": True}, {"phase": "Healthy"}, {"paused": None}),
        (
            {"analysis": {"outcome": "Pass", "reason": "ok"}},
            {"analysis": {"outcome": "Pass", "reason": "fine"}},
            {"analysis": {"reason": "fine"}},
        ),
    ],
    ids=["unchanged", "empty", "changed", "removed-key", "nested"],
)
def test_the_status_is_written_once_as_a_merge_patch_and_not_when_unchanged(
    stored: dict[str, Any], wanted: dict[str, Any], written: dict[str, Any] | None
) -> None:
    cluster = Cluster()
    cluster.model_deployment(OLD, stored)
    obj = cluster.kube.get(MD_PATH)
    resource = MDResource(obj, api=cluster.api)
    changed = asyncio.run(write_status(resource, stored, wanted))
    patches = cluster.kube.writes()
    assert changed is (written is not None)
    if written is None:
        assert patches == []
        return
    assert [(p.method, p.path, p.body) for p in patches] == [
        ("PATCH", f"{MD_PATH}/status", {"status": written})
    ]
    assert cluster.status() == wanted


@pytest.mark.parametrize(
    ("read", "now", "cleared", "left"),
    [
        (
            {ANNOTATION: "pause", ANNOTATION_ID: "1"},
            {ANNOTATION: "pause", ANNOTATION_ID: "1"},
            True,
            {},
        ),
        ({ANNOTATION: "pause"}, {ANNOTATION: "pause"}, True, {}),
        (
            {ANNOTATION: "pause", ANNOTATION_ID: "1"},
            {ANNOTATION: "promote", ANNOTATION_ID: "2"},
            False,
            {ANNOTATION: "promote", ANNOTATION_ID: "2"},
        ),
        (
            {ANNOTATION: "pause", ANNOTATION_ID: "1"},
            {ANNOTATION: "pause", ANNOTATION_ID: "2"},
            False,
            {ANNOTATION: "pause", ANNOTATION_ID: "2"},
        ),
        ({ANNOTATION: "pause", ANNOTATION_ID: "1"}, {}, False, {}),
        ({}, {"other": "x"}, False, {"other": "x"}),
    ],
    ids=[
        "same-request",
        "same-request-without-id",
        "a-new-request-since",
        "the-same-words-asked-again",
        "already-gone",
        "nothing-asked",
    ],
)
def test_a_manual_action_is_cleared_by_id_and_a_newer_request_is_kept(
    read: dict[str, str], now: dict[str, str], cleared: bool, left: dict[str, str]
) -> None:
    cluster = Cluster()
    cluster.model_deployment(OLD, annotations=now)
    resource = MDResource(cluster.kube.get(MD_PATH), api=cluster.api)
    assert asyncio.run(clear_action(resource, read)) is cleared
    assert cluster.kube.get(MD_PATH)["metadata"].get("annotations", {}) == left


# -- the ModelDeployment pass over the skeleton -------------------------------------------


def test_a_handled_action_is_recorded_and_cleared_in_the_same_pass() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.deployment(A)
    cluster.model_deployment(
        OLD, serving(A, OLD), annotations={ANNOTATION: "retry", ANNOTATION_ID: "r-1"}
    )
    cluster.md_pass()
    assert cluster.status()["lastAction"]["id"] == "r-1"
    assert ANNOTATION not in cluster.kube.get(MD_PATH)["metadata"]["annotations"]


def test_a_request_made_while_the_pass_ran_survives_it() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.deployment(A)
    cluster.model_deployment(
        OLD, serving(A, OLD), annotations={ANNOTATION: "retry", ANNOTATION_ID: "r-1"}
    )
    read = cluster.kube.get(MD_PATH)
    # A person asks again (a new id) after the pass read the object.
    cluster.kube.put(
        MD_PATH,
        {
            **read,
            "metadata": {
                **read["metadata"],
                "annotations": {ANNOTATION: "abort", ANNOTATION_ID: "r-2"},
            },
        },
    )
    cluster.md_pass(read)
    annotations = cluster.kube.get(MD_PATH)["metadata"]["annotations"]
    assert annotations == {ANNOTATION: "abort", ANNOTATION_ID: "r-2"}
    assert cluster.status()["lastAction"]["id"] == "r-1"


def test_a_pass_with_nothing_new_writes_nothing() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.deployment(A)
    cluster.model_deployment(OLD, serving(A, OLD))
    first = cluster.md_pass()
    assert first.status_written  # conditions and the message are filled in
    before = len(cluster.kube.writes())
    second = cluster.md_pass()
    assert second.decision.actions == ()
    assert not second.status_written
    assert len(cluster.kube.writes()) == before


def canary_at_50(cluster: Cluster) -> None:
    status = serving(A, OLD)
    status.update(
        phase="Progressing",
        canaryRevision=B,
        canaryWeight=50,
        currentStep=1,
        stepStartedAt="2026-11-27T11:59:00Z",
    )
    status["history"].insert(0, entry(B, NEW, "Progressing", "2026-11-27T11:58:00Z"))
    cluster.deployment(A)
    cluster.deployment(B)
    cluster.model_deployment(NEW, status, annotations={ANNOTATION: "abort", ANNOTATION_ID: "x-1"})


def test_when_the_router_refuses_a_rollback_the_candidate_keeps_its_pods() -> None:
    """The first failed action stops the rest: no scaling down what may still take traffic."""
    cluster = Cluster(router=FakeRouter({A: 50, B: 50}, refuses="HTTPRoute: 503"))
    canary_at_50(cluster)
    result = cluster.md_pass()
    assert isinstance(result.failed[0], SetWeights)
    assert ScaleRevision(B, 0) in result.decision.actions
    assert not cluster.kube.writes(f"fraud-{B}"), "the candidate's Deployment is not touched"
    assert cluster.kube.get(f"{DEPLOYMENTS}/fraud-{B}")["spec"]["replicas"] == 1
    # The decision is still recorded once; the next pass sees the router and tries again.
    assert len(cluster.kube.writes("/status")) == 1
    assert cluster.status()["stableRevision"] == A
    assert "canaryRevision" not in cluster.status()
    cluster.router.refuses = None
    cluster.md_pass()
    assert cluster.router.weights == {A: 100}
    assert cluster.kube.get(f"{DEPLOYMENTS}/fraud-{B}")["spec"]["replicas"] == 0


def test_a_failed_deployment_write_stops_the_pass_before_the_router() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}))
    cluster.kube.failures.append(Failure("POST", "/deployments", 500, "etcdserver: timeout"))
    cluster.model_deployment(OLD)
    result = cluster.md_pass()
    assert result.applied == []
    assert result.failed is not None
    assert "500" in result.failed[1]
    assert cluster.router.asked == []
    assert result.status_written


def test_no_step_is_asked_of_a_router_that_cannot_be_read() -> None:
    cluster = Cluster(router=FakeRouter({A: 100}, unreadable="connection refused"))
    cluster.deployment(A)
    cluster.model_deployment(NEW, serving(A, OLD))
    for _ in range(3):
        cluster.md_pass()
        cluster.deployment(B)  # the candidate is up: only the router holds the step back
    assert cluster.router.asked == []
    assert "waiting for the router" in cluster.status()["message"]


# -- the drill pass over the same skeleton ----------------------------------------------------


def drill_cluster() -> Cluster:
    cluster = Cluster(router=FakeRouter({B: 100}))
    status = serving(B, NEW)
    status["history"].append(entry(A, OLD, "Promoted", "2026-11-27T09:00:00Z"))
    cluster.deployment(B)
    cluster.model_deployment(NEW, status)
    cluster.kube.put(
        DRILL_PATH,
        {
            "apiVersion": "modelcanary.io/v1alpha1",
            "kind": "RollbackDrill",
            "metadata": {
                "name": "drill-1",
                "namespace": NS,
                "labels": {"modelcanary.io/model": "fraud"},
                "creationTimestamp": "2026-11-27T11:00:00Z",
            },
            "spec": {"modelDeployment": "fraud", "mode": "warm"},
        },
    )
    return cluster


def drill_pass(cluster: Cluster) -> Any:
    executor = DrillExecutor(cluster.reconciler)
    return asyncio.run(executor.run_pass(cluster.kube.get(DRILL_PATH), now=NOW))


def test_a_drill_pass_stops_at_its_first_failed_action_and_still_writes_its_status() -> None:
    cluster = drill_cluster()
    cluster.kube.failures.append(Failure("POST", "/deployments", 500, "etcdserver: timeout"))
    result = drill_pass(cluster)
    assert result.failed is not None
    assert result.applied == []
    assert result.status_written
    drill = cluster.kube.get(DRILL_PATH)["status"]
    assert (drill["phase"], drill["step"]) == ("Running", "WaitingReady")
    assert cluster.router.asked == []


def test_a_drill_pass_with_nothing_new_writes_nothing() -> None:
    cluster = drill_cluster()
    drill_pass(cluster)  # starts: the target's Deployment is made, not yet Ready
    status_writes = len(cluster.kube.writes(f"{DRILL_PATH}/status"))
    again = drill_pass(cluster)
    assert not again.status_written
    assert len(cluster.kube.writes(f"{DRILL_PATH}/status")) == status_writes


def test_neither_pass_shifts_toward_a_target_through_an_unreadable_router() -> None:
    cluster = drill_cluster()
    drill_pass(cluster)
    cluster.deployment(A)  # the target is Ready
    cluster.router.unreadable = "connection refused"
    for _ in range(3):
        drill_pass(cluster)
    assert cluster.router.asked == []
    assert "waiting for the router" in cluster.kube.get(DRILL_PATH)["status"]["verdictNote"]


def test_a_drill_of_a_model_whose_status_cannot_be_read_is_refused_naming_the_field() -> None:
    cluster = drill_cluster()
    md = cluster.kube.get(MD_PATH)
    md["status"]["history"][1]["createdAt"] = "0000-01-01T00:00:00Z"
    cluster.kube.put(MD_PATH, md)
    result = drill_pass(cluster)
    drill = cluster.kube.get(DRILL_PATH)["status"]
    assert drill["phase"] == "Refused"
    assert "status.history[1].createdAt" in drill["reason"]
    assert result.decision.actions == ()
    assert cluster.router.asked == []


def test_a_drill_whose_own_status_cannot_be_read_ends_failed_and_keeps_the_rest() -> None:
    cluster = drill_cluster()
    drill = cluster.kube.get(DRILL_PATH)
    drill["status"] = {
        "phase": "Running",
        "step": "Judging",
        "startedAt": "0000-01-01T00:00:00Z",
        "weightsBefore": {B: 100},
    }
    cluster.kube.put(DRILL_PATH, drill)
    result = drill_pass(cluster)
    status = cluster.kube.get(DRILL_PATH)["status"]
    assert status["phase"] == "Failed"
    assert "status.startedAt" in status["reason"]
    assert (status["step"], status["startedAt"]) == ("Judging", "0000-01-01T00:00:00Z")
    assert status["weightsBefore"] == {B: 100}
    assert result.finished
    assert result.decision.actions == ()
    assert cluster.router.asked == []
