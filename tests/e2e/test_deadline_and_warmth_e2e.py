"""The progress deadline and the scale-down delay on the full tier: a real scheduler that
cannot place the candidate's pods, kwok nodes, real Deployments, nginx and Prometheus.

A candidate nobody can schedule must end its canary at ``progressDeadline`` (and the
next predictor change must start a fresh one); a promoted candidate must leave the
previous revision Ready for ``scaleDownDelay`` and then take it to zero.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from kr8s.objects import Deployment, Event, Pod

from e2e.dataplane.scenario import CanaryScenario, healthy_on
from e2e.harness.kubernetes import list_objects, wait_for
from modelcanary.workloads.builders import revision_name
from tests.e2e.test_canary_e2e import BETTER, serve_first

pytestmark = pytest.mark.e2e

DEADLINE = 15.0
DELAY = 20.0
NOWHERE = {"modelcanary.io/e2e-no-such-node": "true"}
"""A nodeSelector no kwok node carries: the scheduler can never place these pods."""


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _deployment(world: CanaryScenario, revision: str) -> dict[str, Any]:
    found = Deployment.get(
        revision_name(world.name, revision), namespace=world.namespace, api=world.api
    )
    return dict(found.raw)


def _unschedulable(world: CanaryScenario, revision: str) -> bool:
    pods = list_objects(
        world.api,
        Pod,
        namespace=world.namespace,
        label_selector={"modelcanary.io/revision": revision},
    )
    conditions = [c for p in pods for c in (p.raw.get("status") or {}).get("conditions") or []]
    return any(
        c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
    )


def _events(world: CanaryScenario) -> list[str]:
    return [
        e.raw["reason"]
        for e in list_objects(world.api, Event, namespace=world.namespace)
        if e.raw["involvedObject"]["name"] == world.name
    ]


def test_an_unschedulable_candidate_is_aborted_at_the_deadline_and_the_next_change_starts_anew(
    scenario: CanaryScenario,
) -> None:
    deadline = f"{DEADLINE:.0f}s"
    stable = serve_first(scenario, progress_deadline=deadline)
    manifest = scenario.manifest(BETTER, progress_deadline=deadline)
    manifest["spec"]["predictor"]["template"]["spec"]["nodeSelector"] = NOWHERE
    scenario.apply(manifest)
    started = scenario.wait_for_status(
        lambda s: s.get("canaryRevision") is not None, timeout=30, what="the canary started"
    )
    candidate = str(started["canaryRevision"])
    # The scheduler itself says no node fits: this is a real Pending pod, not a stub.
    wait_for(lambda: _unschedulable(scenario, candidate), timeout=30, what="the pods Unschedulable")

    status = scenario.wait_for_status(
        lambda s: s.get("phase") == "RolledBack",
        timeout=DEADLINE + 30,
        what="the candidate aborted at its deadline",
    )
    entry = next(e for e in status["history"] if e["revision"] == candidate)
    assert entry["outcome"] == "Aborted"
    assert entry["reason"].startswith(f"progress deadline {deadline} exceeded"), entry["reason"]
    assert "0/1 replicas ready" in entry["reason"]
    waited = _seconds(entry["finishedAt"]) - _seconds(entry["createdAt"])
    assert waited >= DEADLINE, "aborted before its deadline"
    assert status["stableRevision"] == stable
    assert "canaryUnavailableSince" not in status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert scenario.route_sync is not None
    scenario.route_sync.wait_until_applied({scenario.revision_service(stable): 100}, timeout=30)
    wait_for(
        lambda: _deployment(scenario, candidate)["spec"]["replicas"] == 0,
        timeout=30,
        what="the candidate scaled to zero",
    )
    wait_for(  # kopf posts events in the background
        lambda: "ProgressDeadlineExceeded" in _events(scenario),
        timeout=30,
        what="the ProgressDeadlineExceeded event",
    )
    labels = f'name="{scenario.name}",namespace="{scenario.namespace}"'
    metrics = scenario.operator.metrics()
    assert f"modelcanary_progress_deadline_exceeded_total{{{labels}}} 1.0" in metrics
    # The same predictor is not tried again by itself.
    refused = scenario.wait_for_status(
        lambda s: "change spec.predictor, or retry it" in s.get("message", ""),
        timeout=30,
        what="the aborted revision refused",
    )
    assert refused.get("canaryRevision") is None

    # The next predictor change starts a fresh canary, which proceeds to promotion.
    fixed = scenario.manifest("1.2.0", progress_deadline=deadline)
    fixed["spec"]["predictor"]["template"]["spec"]["nodeSelector"] = None  # merge patch: drop it
    scenario.apply(fixed)
    status = scenario.wait_for_status(healthy_on("1.2.0"), timeout=150, what="1.2.0 promoted")
    assert [e["outcome"] for e in status["history"]] == ["Promoted", "Aborted", "Promoted"]


def test_the_previous_revision_stays_ready_after_promotion_and_goes_to_zero_after_the_delay(
    scenario: CanaryScenario,
) -> None:
    delay = f"{DELAY:.0f}s"
    old = serve_first(scenario, scale_down_delay=delay)
    # The pause lets the count metrics compare both revisions at 50%: at 100% stable
    # takes no requests, and with no comparison at all they would hold there.
    quick = {
        "steps": [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"setWeight": 100}],
        "bake": "2s",
    }
    scenario.apply(scenario.manifest(BETTER, scale_down_delay=delay, **quick))
    status = scenario.wait_for_status(healthy_on(BETTER), timeout=150, what="promoted")
    new = str(status["stableRevision"])
    assert status["previousRevision"] == old
    scale_down_at = _seconds(status["scaleDownAt"])
    promoted_at = _seconds(status["lastKnownGood"]["promotedAt"])
    assert scale_down_at - promoted_at == pytest.approx(DELAY, abs=1)
    assert scenario.route_sync is not None
    scenario.route_sync.wait_until_applied({scenario.revision_service(new): 100}, timeout=30)
    assert scenario.servers is not None
    servers = scenario.servers

    # Through the window the old revision keeps its pods Ready, sampled every second.
    warm_checks = 0
    while time.time() < scale_down_at - 1:
        deployment = _deployment(scenario, old)
        assert deployment["spec"]["replicas"] == 1
        assert (deployment.get("status") or {}).get("readyReplicas") == 1
        assert old in servers.running()
        warm_checks += 1
        time.sleep(1)
    assert warm_checks >= 1, "promotion seen too late to check the window"

    wait_for(
        lambda: _deployment(scenario, old)["spec"]["replicas"] == 0,
        timeout=max(scale_down_at - time.time(), 0) + 30,
        what="the previous revision scaled to zero after the delay",
    )
    wait_for(lambda: servers.running() == {new}, timeout=30, what="its server stopped")
    status = scenario.wait_for_status(
        lambda s: "previousRevision" not in s, timeout=30, what="the window closed in status"
    )
    assert status["stableRevision"] == new
