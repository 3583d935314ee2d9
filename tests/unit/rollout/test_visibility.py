"""The first step waits until Prometheus can see the candidate (rollout/visibility.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelcanary.rollout import visibility
from tests.unit.rollout.world import Counters, World, make_spec, serving_first_revision

pytestmark = pytest.mark.unit
Q = 'sum(x{revision="{{revision}}"})'


def counted(version: str) -> Any:
    spec = make_spec(version)
    raw = spec.to_dict()
    raw["analysis"].update(
        {"interval": "1s", "metrics": [{"name": "errors", "errors": {"failed": Q, "total": Q}}]}
    )
    return type(spec).model_validate(raw)


def candidate_started(*, lazy: bool) -> World:
    world = serving_first_revision(counted("1.0.0"))
    stable = world.status.stable_revision
    assert stable is not None
    world.counters = Counters(lambda revision: 0.001, lazy=lazy)
    world.counters.serve({stable: 100}, 600)
    world.roll_out(counted("2.0.0"))
    return world


def test_the_first_step_waits_until_prometheus_answers_with_the_candidates_series() -> None:
    world = candidate_started(lazy=True)
    for _ in range(10):
        world.step(advance=timedelta(seconds=1))
    assert world.status.canary_weight == 0
    assert world.route == {world.status.stable_revision: 100}
    assert world.status.message.startswith("waiting for Prometheus to see candidate ")
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.visibility_wait == "Waiting"
    assert analysis.candidate_seen_at is None
    # Its counters show up (exported at zero, say after a scrape): traffic follows.
    candidate = world.status.canary_revision
    assert candidate is not None
    assert world.counters is not None
    world.counters.serve({candidate: 0}, 1)
    world.run(lambda w: w.status.canary_weight == 10, advance=timedelta(seconds=1))
    assert world.status.analysis is not None
    assert world.status.analysis.candidate_seen_at is not None
    assert "CandidateNotVisible" not in world.events()


def test_a_candidate_never_seen_gets_traffic_after_the_wait_with_one_warning() -> None:
    world = candidate_started(lazy=True)
    world.run(lambda w: w.status.canary_weight == 10, advance=timedelta(seconds=1))
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.visibility_wait == "GaveUp"
    started = world.status.history[0].created_at
    assert world.now - started >= visibility.WAIT
    assert world.now - started <= visibility.WAIT + timedelta(seconds=10)
    world.run(lambda w: w.status.canary_weight == 50, advance=timedelta(seconds=5))
    assert world.events().count(visibility.EVENT_REASON) == 1


def test_counters_exported_at_zero_let_the_first_step_go_at_once() -> None:
    world = candidate_started(lazy=False)
    world.run(lambda w: w.status.canary_weight == 10, advance=timedelta(seconds=1))
    started = world.status.history[0].created_at
    assert world.now - started < timedelta(seconds=10)
    assert world.status.analysis is not None
    assert world.status.analysis.visibility_wait is None


def test_threshold_metrics_alone_do_not_wait() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    world.run(lambda w: w.status.canary_weight == 10, advance=timedelta(seconds=1))
    assert world.status.analysis is not None
    assert world.status.analysis.visibility_wait is None


def test_the_replicas_router_does_not_wait_for_pods_it_has_not_started() -> None:
    spec = counted("1.0.0")
    raw = spec.to_dict()
    raw["traffic"] = {"replicas": {}}
    world = serving_first_revision(type(spec).model_validate(raw))
    world.counters = Counters(lambda revision: 0.001, lazy=True)
    raw["predictor"]["model"]["version"] = "2.0.0"
    world.roll_out(type(spec).model_validate(raw))
    world.run(lambda w: w.status.canary_weight > 0, advance=timedelta(seconds=1))
    assert world.status.analysis is not None
    assert world.status.analysis.visibility_wait is None
