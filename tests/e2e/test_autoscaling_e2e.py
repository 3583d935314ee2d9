"""Autoscaled revisions on the full tier, with the real HPA controller.

kube-controller-manager's horizontal-pod-autoscaler controller enforces
minReplicas even with no metrics source (none runs here): that is enough to
make it scale a revision for real. The operator raises the candidate's HPA
minimum with its weight (10%, 50%, 100% of a stable of 4: 1, 2, 4 pods) and
must leave the count to the HPA: a poller records every spec.replicas the
candidate's Deployment ever has, from its creation through promotion and a
later rollback of another candidate. The candidate's own predictor.replicas is
1, which is what the operator used to write back on every pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import kr8s
import pytest
from kr8s.objects import Deployment, HorizontalPodAutoscaler

from e2e.dataplane.revisions import FaultsFor
from e2e.dataplane.scenario import CanaryScenario, healthy_on
from e2e.harness.kubernetes import wait_for
from modelcanary.workloads.builders import revision_name

pytestmark = pytest.mark.e2e

GOOD, BETTER, BAD = "1.0.0", "1.1.0", "2.0.0-errors"


def faults_for(version: str) -> Mapping[str, Any]:
    return {"error_rate": 0.2} if version == BAD else {}


@pytest.fixture
def scenario_faults() -> FaultsFor:
    return faults_for


def autoscaled(world: CanaryScenario, version: str, replicas: int) -> dict[str, Any]:
    # No warm window (strategy.scaleDownDelay): the old stable is retired at promotion.
    body = world.manifest(version, scale_down_delay="0s")
    body["spec"]["predictor"]["replicas"] = replicas
    body["spec"]["predictor"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 6}
    return body


class ReplicaRecorder:
    """Every spec.replicas a Deployment has, in order, polled in the background."""

    def __init__(self, api: kr8s.Api, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplicaRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                found = Deployment.get(self.name, namespace=self.namespace, api=self.api)
                replicas = int(found.raw["spec"]["replicas"])
                if not self.seen or self.seen[-1] != replicas:
                    self.seen.append(replicas)
            except kr8s.NotFoundError:
                pass
            self._stop.wait(0.2)


def hpa(world: CanaryScenario, revision: str) -> Any:
    try:
        return HorizontalPodAutoscaler.get(
            revision_name(world.name, revision), namespace=world.namespace, api=world.api
        )
    except kr8s.NotFoundError:
        return None


def replicas(world: CanaryScenario, revision: str) -> int:
    found = Deployment.get(
        revision_name(world.name, revision), namespace=world.namespace, api=world.api
    )
    return int(found.raw["spec"]["replicas"])


def scaled_by_the_hpa_controller(world: CanaryScenario, revision: str) -> bool:
    """spec.replicas was last written through the scale subresource (the HPA's way)."""
    found = Deployment.get(
        revision_name(world.name, revision), namespace=world.namespace, api=world.api
    )
    return any(
        entry.get("subresource") == "scale"
        for entry in found.raw["metadata"].get("managedFields") or []
    )


def answered(action_id: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        return bool((status.get("lastAction") or {}).get("id") == action_id)

    return check


def test_the_hpa_scales_each_revision_and_the_operator_leaves_its_choice_alone(
    scenario: CanaryScenario,
) -> None:
    world = scenario
    world.apply(autoscaled(world, GOOD, replicas=4))
    first = world.wait_for_status(healthy_on(GOOD), timeout=90, what=f"{GOOD} serving")[
        "stableRevision"
    ]
    assert replicas(world, first) == 4  # started at predictor.replicas, within the bounds
    assert hpa(world, first).raw["spec"]["minReplicas"] == 1

    world.apply(autoscaled(world, BETTER, replicas=1))
    better = world.wait_for_status(
        lambda s: s.get("canaryRevision") not in (None, first), timeout=30, what="the canary"
    )["canaryRevision"]
    with ReplicaRecorder(world.api, world.namespace, revision_name(world.name, better)) as seen:
        weights: list[int] = []

        def promoted(status: dict[str, Any]) -> bool:
            weight = status.get("canaryWeight", 0)
            if status.get("canaryRevision") and (not weights or weights[-1] != weight):
                weights.append(weight)
            return healthy_on(BETTER)(status)

        world.wait_for_status(promoted, timeout=240, what=f"{BETTER} promoted")
        assert weights[-3:] == [10, 50, 100], weights
        # Sized by its HPA before each weight: 10% -> 1, 50% -> 2, 100% -> all 4 of stable's.
        assert seen.seen == [1, 2, 4], seen.seen
        assert scaled_by_the_hpa_controller(world, better)
        # Promoted: the user's minimum is back, and the HPA (no metrics) keeps 4 pods.
        wait_for(
            lambda: hpa(world, better).raw["spec"]["minReplicas"] == 1,
            timeout=30,
            what="the new stable's HPA back at minReplicas 1",
        )
        # The old stable is retired: its HPA removed, then scaled to zero.
        wait_for(lambda: hpa(world, first) is None, timeout=30, what="the old stable's HPA gone")
        assert replicas(world, first) == 0

        # A bad candidate is rolled back; the stable's HPA and count are left alone.
        world.apply(autoscaled(world, BAD, replicas=1))
        status = world.wait_for_status(
            lambda s: s.get("phase") == "RolledBack", timeout=150, what=f"{BAD} rolled back"
        )
        assert status["stableRevision"] == better
        bad = next(e["revision"] for e in status["history"] if e["outcome"] == "RolledBack")
        wait_for(lambda: hpa(world, bad) is None, timeout=30, what="the bad candidate's HPA gone")
        assert replicas(world, bad) == 0
        assert hpa(world, better).raw["spec"]["minReplicas"] == 1
        # More passes of the operator, each one proven by its answer to a request
        # that does not apply now: the count is still the HPA's.
        for n in range(3):
            world.act("resume", f"pass-{n}")
            world.wait_for_status(answered(f"pass-{n}"), timeout=30, what=f"pass {n} answered")
        assert replicas(world, better) == 4
    assert seen.seen == [1, 2, 4], seen.seen
