"""strategy.scaleDownDelay, pass by pass: the previous stable revision stays warm after a
promotion, so a rollback inside the window meets ready pods, and is scaled down after it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelcanary.api.modeldeployment import ModelDeploymentSpec
from modelcanary.rollout.decision import DeleteRevision, ScaleRevision
from modelcanary.rollout.observations import ActiveDrill, ManualAction
from tests.unit.rollout.world import World, make_spec, serving_first_revision, strategy

pytestmark = pytest.mark.unit


def spec(version: str, delay: str = "30s", **overrides: object) -> ModelDeploymentSpec:
    fields = {"strategy": strategy(scaleDownDelay=delay), "analysis": None, **overrides}
    return make_spec(version, **fields)


def promoted(world: World, version: str, delay: str = "30s", **overrides: object) -> str:
    """Roll ``version`` out to promotion; stop at the pass that promoted it."""
    world.roll_out(spec(version, delay, **overrides))
    new = world.spec.predictor.revision()
    world.run(lambda w: w.status.stable_revision == new)
    return new


def scaled_to_zero(world: World, revision: str) -> list[int]:
    """Indexes of the passes that asked to scale ``revision`` to zero."""
    return [
        i
        for i, decision in enumerate(world.decisions)
        if ScaleRevision(revision, 0) in decision.actions
    ]


def test_the_previous_revision_stays_at_full_size_for_the_delay_then_goes_to_zero() -> None:
    world = serving_first_revision(spec("1.0.0"))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0")
    promoted_at = world.now - timedelta(seconds=5)
    assert world.status.previous_revision == old
    assert world.status.scale_down_at == promoted_at + timedelta(seconds=30)
    assert world.decisions[-1].requeue_after <= 30
    world.run(lambda w: w.now >= promoted_at + timedelta(seconds=30))
    assert world.replicas[old] == 2  # still warm on the last pass inside the window
    assert not scaled_to_zero(world, old)
    after = world.step().status
    assert world.replicas[old] == 0
    assert after.previous_revision is None
    assert after.scale_down_at is None
    assert len(scaled_to_zero(world, old)) == 1
    for _ in range(10):
        world.step()
    assert len(scaled_to_zero(world, old)) == 1  # asked once, not every pass


def test_a_rollback_to_the_previous_revision_inside_the_window_meets_warm_pods() -> None:
    world = serving_first_revision(spec("1.0.0"))
    old = world.status.stable_revision
    assert old is not None
    new = promoted(world, "1.1.0")
    world.step()
    asked = world.step(action=ManualAction("rollback", "b1", revision=old))
    # Warm: the very pass that takes the request routes to it, with no wait for pods,
    # and the next one reads the weights back and is done.
    assert asked.status.message == f"restoring {old}: routing 100% to it"
    assert world.route == {old: 100}
    restored = world.step()
    assert restored.status.restoring is None
    assert restored.status.stable_revision == old
    assert not scaled_to_zero(world, old)
    assert world.replicas[old] == 2
    assert world.replicas[new] == 0
    assert world.status.previous_revision is None


def test_with_no_delay_the_previous_revision_is_cold_when_rolled_back_to() -> None:
    world = serving_first_revision(spec("1.0.0", "0s"))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0", "0s")
    assert world.replicas[old] == 0
    assert world.status.previous_revision is None
    world.broken.add(old)  # its pods take a while to start again
    world.step(action=ManualAction("rollback", "b1", revision=old))
    assert world.status.restoring == old
    assert "waiting for it to become Available" in world.status.message
    world.broken.discard(old)
    world.run(lambda w: w.status.restoring is None)
    assert world.route == {old: 100}


def test_a_new_canary_inside_the_window_scales_the_previous_revision_down_at_once() -> None:
    world = serving_first_revision(spec("1.0.0", "10m"))
    old = world.status.stable_revision
    assert old is not None
    middle = promoted(world, "1.1.0", "10m")
    world.roll_out(spec("1.2.0", "10m"))
    world.step()
    assert world.status.canary_revision == world.spec.predictor.revision()
    assert world.replicas[old] == 0
    assert world.replicas[middle] == 2  # the stable one: the candidate's way back
    assert world.status.previous_revision is None


def test_a_restarted_operator_scales_down_on_time_from_the_status() -> None:
    world = serving_first_revision(spec("1.0.0"))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0")
    scale_down_at = world.status.scale_down_at
    assert scale_down_at is not None
    restarted = World(
        world.spec,
        status=world.status.model_copy(deep=True),
        now=scale_down_at,
        replicas=dict(world.replicas),
        roles=dict(world.roles),
        route=dict(world.route or {}),
    )
    restarted.step()
    assert restarted.replicas[old] == 0
    assert restarted.status.previous_revision is None


def test_history_trimming_keeps_the_warm_revision_until_its_window_closes() -> None:
    world = serving_first_revision(spec("1.0.0", revisionHistoryLimit=1))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0", revisionHistoryLimit=1)
    assert [e.revision for e in world.status.history][-1] == old
    world.run(lambda w: w.status.previous_revision is None)
    world.step()
    assert old not in [e.revision for e in world.status.history]
    assert any(DeleteRevision(old) in d.actions for d in world.decisions)


def test_the_replicas_router_does_not_keep_the_previous_revision_warm() -> None:
    world = serving_first_revision(spec("1.0.0", traffic={"replicas": {}}))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0", traffic={"replicas": {}})
    # Every ready pod behind the shared Service takes traffic: warm would mean serving.
    assert world.replicas[old] == 0
    assert world.status.previous_revision is None


def test_a_drill_rehearsing_the_warm_revision_keeps_it_past_the_window() -> None:
    world = serving_first_revision(spec("1.0.0"))
    old = world.status.stable_revision
    assert old is not None
    promoted(world, "1.1.0")
    world.drill = ActiveDrill("drill-1", target=old)
    world.run(lambda w: w.status.previous_revision is None)  # the window has closed
    assert world.replicas[old] == 2  # the drill owns it until it is done
    assert not scaled_to_zero(world, old)
    world.drill = None
    world.step()
    assert world.replicas[old] == 0  # steady state: everything but stable at zero
