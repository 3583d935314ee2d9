"""The control plane goes away mid-canary and comes back: nothing is lost.

A rolling upgrade of kube-apiserver, or a crash of it or of etcd, is routine on
a production cluster. The operator's watches and requests fail for a while and
then resume against the same address; the rollout must then carry on from what
the status says, without repeating or losing a history entry. The harness stops
the component and starts it again on its old port and data, as a restart does.

The outage is a deliberate length of time, not a wait for a condition: the point
is that nothing can be reached for that long.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.dataplane.scenario import CanaryScenario, healthy_on
from e2e.harness import ControlPlane
from e2e.harness.kubernetes import wait_for

pytestmark = pytest.mark.e2e

GOOD, BETTER = "1.0.0", "1.1.0"
OUTAGE_SECONDS = 10.0
STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "20s"}},
    {"setWeight": 50},
    {"pause": {"duration": "4s"}},
    {"setWeight": 100},
]


def _serve_first(world: CanaryScenario) -> str:
    world.apply(world.manifest(GOOD, steps=STEPS))
    status = world.wait_for_status(healthy_on(GOOD), timeout=90, what=f"{GOOD} serving")
    assert world.route_sync is not None
    world.route_sync.wait_until_applied(
        {world.revision_service(status["stableRevision"]): 100}, timeout=30
    )
    return str(status["stableRevision"])


def _at_first_step(status: dict[str, Any]) -> bool:
    return status.get("canaryWeight") == 10 and status.get("currentStep") == 1


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_control_plane_outage_mid_canary_loses_and_repeats_nothing(
    scenario: CanaryScenario, full_control_plane: ControlPlane, component: str
) -> None:
    old = _serve_first(scenario)
    scenario.apply(scenario.manifest(BETTER, steps=STEPS))
    scenario.wait_for_status(_at_first_step, timeout=60, what="the candidate at 10%")

    full_control_plane.stop_component(component)
    try:
        time.sleep(OUTAGE_SECONDS)
    finally:
        full_control_plane.start_component(component)

    status = scenario.wait_for_status(
        healthy_on(BETTER), timeout=150, what=f"{BETTER} promoted after the {component} outage"
    )
    new = status["stableRevision"]
    assert new != old
    assert [(e["revision"], e["outcome"]) for e in status["history"]] == [
        (new, "Promoted"),
        (old, "Promoted"),
    ]
    assert status["lastKnownGood"]["revision"] == new
    assert scenario.operator is not None
    assert scenario.operator.is_running()
    # A failed API call is a short retry, never a failed daemon (kopf waits 60 s then).
    assert "failed with an exception" not in scenario.operator.log_text()
    assert scenario.route_sync is not None
    assert scenario.route_sync.is_alive()
    scenario.route_sync.wait_until_applied({scenario.revision_service(new): 100}, timeout=30)
    servers = scenario.servers
    assert servers is not None
    assert servers.is_alive(), f"the revision servers' sync died: {servers.last_error}"
    wait_for(lambda: servers.running() == {new}, timeout=60, what="the old revision scaled down")
