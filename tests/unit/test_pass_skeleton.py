"""The pass skeleton both passes share, driven over a fake API at the network edge.

The glue between a decision and the cluster (actions in order, stopping at the
first failure; one status write, none when nothing changed; the manual action
cleared by id) had no test below e2e. Here the real ``Reconciler`` runs over
kr8s whose HTTP goes to ``FakeKube`` (a few API endpoints in memory), with the
router factory injected (tests/unit/pass_world.py); the drill's pass over the
same skeleton is in test_drill_pass.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from modelcanary.passes import ModelDeploymentResource as MDResource
from modelcanary.passes import (
    PassState,
    carry_out_in_order,
    clear_action,
    remaining,
    write_status,
)
from modelcanary.rest import ObjectRef
from modelcanary.rollout.actions import ANNOTATION, ANNOTATION_ID
from modelcanary.rollout.decision import Action, ScaleRevision, SetWeights
from tests.unit.fake_kube import Failure
from tests.unit.pass_world import (
    DEPLOYMENTS,
    MD_PATH,
    NEW,
    NS,
    OLD,
    A,
    B,
    Cluster,
    FakeRouter,
    entry,
    serving,
)

pytestmark = pytest.mark.unit


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
    resource = ObjectRef.of(MDResource, cluster.api, NS, "fraud")
    answer = asyncio.run(write_status(resource, stored, wanted))
    patches = cluster.kube.writes()
    assert (answer is not None) is (written is not None)
    if written is None:
        assert patches == []
        return
    assert [(p.method, p.path, p.body) for p in patches] == [
        ("PATCH", f"{MD_PATH}/status", {"status": written})
    ]
    assert cluster.status() == wanted
    assert answer == cluster.kube.get(MD_PATH)  # the API server's answer, as plain dicts
    assert type(answer["status"]) is dict


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
    resource = ObjectRef.of(MDResource, cluster.api, NS, "fraud")
    assert (asyncio.run(clear_action(resource, read)) is not None) is cleared
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


def test_a_decisions_wait_counts_from_the_start_of_its_pass() -> None:
    """A pass that took 0.3 s of a 1 s interval sleeps 0.7 s, so looks stay 1 s apart."""
    started = time.monotonic() - 0.3
    assert remaining(1.0, since=started) == pytest.approx(0.7, abs=0.05)
    assert remaining(0.2, since=started) == 0.0  # overdue: the next pass at once
