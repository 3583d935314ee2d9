"""Watch-driven and quiet at rest, on the full tier with the operator as a process.

* A person edits the HTTPRoute's weights by hand: the route's watch event
  wakes the ModelDeployment's pass, which puts 100% back on stable within a
  few seconds. With nothing due, a pass otherwise waits IDLE_SECONDS (30 min)
  for its safety resync, so a repair this quick can only come from the event.
* A Healthy ModelDeployment at rest makes no API request: the operator's own
  ``modelcanary_api_requests_total`` (every request of its kr8s client) does
  not move over a measured window, and no pass runs in it.

The measured window is a deliberate length of time, not a wait for a
condition: the point is that nothing happens for that long.
"""

from __future__ import annotations

import time

import pytest
from kr8s.objects import new_class

from e2e.dataplane.scenario import CanaryScenario, healthy_on
from e2e.harness.kubernetes import wait_for
from modelcanary.rollout.state import IDLE_SECONDS

pytestmark = pytest.mark.e2e

GOOD = "1.0.0"
REPAIR_WITHIN_SECONDS = 10.0
QUIET_WINDOW_SECONDS = 35.0
"""Longer than the 30 s an idle object used to be polled at, so a poll cannot hide in it."""
HTTPRoute = new_class("HTTPRoute.gateway.networking.k8s.io/v1", namespaced=True)


def _serve_first(world: CanaryScenario) -> str:
    world.apply(world.manifest(GOOD))
    status = world.wait_for_status(healthy_on(GOOD), timeout=90, what=f"{GOOD} serving")
    stable = str(status["stableRevision"])
    assert world.route_sync is not None
    world.route_sync.wait_until_applied({world.revision_service(stable): 100}, timeout=30)
    return stable


def _metric(world: CanaryScenario, name: str) -> dict[str, float]:
    """Every sample of ``name`` on the operator's /metrics, by its label text."""
    assert world.operator is not None
    samples: dict[str, float] = {}
    for line in world.operator.metrics().splitlines():
        if line.startswith(name):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def _backends(world: CanaryScenario) -> list[tuple[str, int]]:
    route = HTTPRoute.get(world.name, namespace=world.namespace, api=world.api)
    refs = route.raw["spec"]["rules"][0].get("backendRefs") or []
    return [(str(ref["name"]), int(ref.get("weight", 1))) for ref in refs]


def test_a_hand_edited_route_is_repaired_because_its_watch_event_wakes_the_pass(
    scenario: CanaryScenario,
) -> None:
    stable = _serve_first(scenario)
    service = scenario.revision_service(stable)
    wait_for(lambda: _backends(scenario) == [(service, 100)], timeout=30, what="route at rest")
    assert IDLE_SECONDS > 10 * REPAIR_WITHIN_SECONDS  # so the idle timer cannot be the cause

    route = HTTPRoute.get(scenario.name, namespace=scenario.namespace, api=scenario.api)
    edited = [
        {"group": "", "kind": "Service", "name": service, "port": 8080, "weight": 50},
        {"group": "", "kind": "Service", "name": "someone-elses", "port": 80, "weight": 50},
    ]
    route.patch(
        [{"op": "replace", "path": "/spec/rules/0/backendRefs", "value": edited}], type="json"
    )
    edited_at = time.monotonic()
    wait_for(
        lambda: _backends(scenario) == [(service, 100)],
        timeout=REPAIR_WITHIN_SECONDS,
        interval=0.1,
        what="the operator to repair the hand-edited route",
    )
    repaired_in = time.monotonic() - edited_at
    assert repaired_in < REPAIR_WITHIN_SECONDS
    assert scenario.status().get("phase") == "Healthy"


def test_a_healthy_model_at_rest_makes_no_api_request(scenario: CanaryScenario) -> None:
    _serve_first(scenario)
    requests = "modelcanary_api_requests_total"
    passes = "modelcanary_reconcile_seconds_count"
    assert any('verb="WATCH"' in series for series in _metric(scenario, requests))

    # Settle: the passes that follow the last writes' own watch events.
    seen, since = _metric(scenario, requests), time.monotonic()

    def settled() -> bool:
        nonlocal seen, since
        now = _metric(scenario, requests)
        if now != seen:
            seen, since = now, time.monotonic()
        return time.monotonic() - since >= 3.0

    wait_for(settled, timeout=60, interval=0.25, what="the operator to go quiet")

    before_requests, before_passes = _metric(scenario, requests), _metric(scenario, passes)
    time.sleep(QUIET_WINDOW_SECONDS)
    after_requests, after_passes = _metric(scenario, requests), _metric(scenario, passes)
    assert after_requests == before_requests, "API requests at rest"
    assert after_passes == before_passes, "passes at rest"
    assert healthy_on(GOOD)(scenario.status())
    assert scenario.operator is not None
    assert scenario.operator.is_running()
