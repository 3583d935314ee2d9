"""Manual actions through the decision core: each applies once, or says why not."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import pytest

from modelcanary.api.modeldeployment import (
    RevisionOutcome,
)
from modelcanary.rollout.actions import parse_action
from modelcanary.rollout.observations import ManualAction
from tests.unit.rollout.world import World, make_spec, serving_first_revision, strategy

pytestmark = pytest.mark.unit

INDEFINITE = {
    "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
    "bake": {"duration": "10m"},
}


def act(world: World, kind: str, action_id: str, revision: str | None = None) -> tuple[bool, str]:
    world.step(action=ManualAction(kind=kind, id=action_id, revision=revision))
    record = world.status.last_action
    assert record is not None
    assert record.id == action_id
    return record.accepted, record.message


def in_canary(spec_strategy: Mapping[str, object] | None = None) -> World:
    world = serving_first_revision()
    overrides = {"strategy": spec_strategy} if spec_strategy else {}
    world.roll_out(make_spec("1.1.0", **overrides))
    world.run(lambda w: w.status.canary_weight > 0)
    return world


def test_parse_action_forms() -> None:
    assert parse_action("promote", "id1") == ManualAction("promote", "id1")
    assert parse_action("promote --full", None) == ManualAction("promote-full", "promote --full")
    assert parse_action("rollback:abc123", "x") == ManualAction("rollback", "x", "abc123")
    assert parse_action("rollback abc123", "y") == ManualAction("rollback", "y", "abc123")
    assert parse_action("", "z") is None
    assert parse_action(None, None) is None


def test_an_indefinite_pause_waits_for_resume() -> None:
    world = in_canary(INDEFINITE)
    for _ in range(50):
        world.step(advance=timedelta(minutes=1))
    assert world.status.phase == "Paused"
    assert world.status.canary_weight == 20
    accepted, _ = act(world, "resume", "r1")
    assert accepted
    world.run(lambda w: w.status.canary_weight == 100)


def test_promote_skips_a_pause_but_not_an_unconfirmed_weight() -> None:
    world = in_canary(INDEFINITE)
    world.run(lambda w: w.status.phase == "Paused")
    world.router_lag = 5
    accepted, message = act(world, "promote", "p1")  # also asks for 100%, not yet confirmed
    assert accepted, message
    assert world.status.current_step == 2
    accepted, message = act(world, "promote", "p2")
    assert not accepted
    assert "setting the weight to 100%" in message


def test_promote_during_the_bake_promotes_now() -> None:
    world = in_canary(INDEFINITE)
    world.step(action=ManualAction("resume", "r"))
    world.run(lambda w: w.status.phase == "Baking")
    accepted, _ = act(world, "promote", "p")
    assert accepted
    assert world.status.phase == "Healthy"
    assert world.status.last_known_good is not None
    assert world.status.last_known_good.note == "promoted by hand during the bake"


def test_promote_full_skips_steps_and_bake() -> None:
    world = in_canary()
    accepted, _ = act(world, "promote-full", "f")
    assert accepted
    world.run(lambda w: w.status.phase == "Healthy", passes=10)
    assert world.status.stable_revision == world.spec.predictor.revision()
    assert "promote --full" in world.status.last_known_good.note  # type: ignore[union-attr]


def test_pause_stops_the_steps_and_resume_goes_on() -> None:
    world = in_canary()
    accepted, _ = act(world, "pause", "p")
    assert accepted
    for _ in range(40):
        world.step(advance=timedelta(minutes=1))
    assert world.status.phase == "Paused"
    assert world.status.canary_weight == 10
    accepted, _ = act(world, "resume", "r")
    assert accepted
    world.run(lambda w: w.status.phase == "Healthy")


def test_abort_returns_traffic_and_is_not_retried_on_its_own() -> None:
    world = in_canary()
    stable = world.status.stable_revision
    candidate = world.spec.predictor.revision()
    accepted, _ = act(world, "abort", "a")
    assert accepted
    assert world.route == {stable: 100}
    for _ in range(20):
        world.step()
    assert world.status.canary_revision is None
    entry = next(e for e in world.status.history if e.revision == candidate)
    assert entry.outcome is RevisionOutcome.ABORTED


def test_actions_that_do_not_apply_say_why() -> None:
    world = serving_first_revision()
    for kind in ("promote", "promote-full", "abort", "pause", "resume"):
        accepted, message = act(world, kind, f"id-{kind}")
        assert not accepted
        assert "no canary is in progress" in message
    accepted, message = act(world, "retry", "id-retry")
    assert not accepted
    assert "already stable" in message
    accepted, message = act(world, "rollback", "id-rb", "nope")
    assert not accepted
    assert "not in the history" in message
    accepted, message = act(world, "explode", "id-x")
    assert not accepted
    assert "unknown action" in message


def test_an_action_is_carried_out_once_per_id() -> None:
    world = in_canary(INDEFINITE)
    world.run(lambda w: w.status.phase == "Paused")
    action = ManualAction("promote", "same-id")
    world.step(action=action)
    step_after_first = world.status.current_step
    for _ in range(3):
        world.step(action=action)
    assert world.events().count("ActionAccepted") == 1
    assert world.status.current_step is not None
    assert step_after_first is not None
    assert world.status.current_step >= step_after_first


def test_rollback_to_an_older_revision_restores_it_and_pins_it() -> None:
    world = serving_first_revision()
    oldest = world.status.stable_revision
    assert oldest is not None
    world.roll_out(make_spec("1.1.0"))
    world.run(
        lambda w: (
            w.status.phase == "Healthy" and w.status.stable_revision == w.spec.predictor.revision()
        )
    )
    current = world.status.stable_revision
    accepted, message = act(world, "rollback", "rb", oldest)
    assert accepted, message
    world.run(lambda w: w.status.stable_revision == oldest and w.status.restoring is None)
    assert world.route == {oldest: 100}
    assert world.replicas[current] == 0  # type: ignore[index]
    assert world.status.last_known_good is not None
    assert world.status.last_known_good.revision == oldest
    assert world.status.phase == "RolledBack"
    for _ in range(10):
        world.step()
    # The spec still names the newer revision, but it is not rolled out again by itself.
    assert world.status.canary_revision is None
    assert world.status.stable_revision == oldest


def test_a_restored_revision_counts_as_recent_when_the_history_is_trimmed() -> None:
    """rollback --to leaves the restored entry at its old place in the history; it is
    still what served until the next promotion, so that promotion must not trim it
    (nor delete its Deployment) in favour of entries used less recently."""
    limited = {"revisionHistoryLimit": 3, "strategy": strategy(scaleDownDelay="0s")}

    def promote(world: World, version: str) -> str:
        world.roll_out(make_spec(version, **limited))
        new = world.spec.predictor.revision()
        world.run(lambda w: w.status.phase == "Healthy" and w.status.stable_revision == new)
        return new

    world = serving_first_revision(make_spec("1.0.0", **limited))
    oldest = world.status.stable_revision
    assert oldest is not None
    middle = promote(world, "1.1.0")
    promote(world, "1.2.0")
    accepted, message = act(world, "rollback", "rb", oldest)
    assert accepted, message
    world.run(lambda w: w.status.stable_revision == oldest and w.status.restoring is None)
    world.step(advance=timedelta(minutes=1))
    newest = promote(world, "1.3.0")
    world.step()
    kept = [entry.revision for entry in world.status.history]
    assert oldest in kept
    assert middle not in kept  # the least recently used goes, as the limit says
    assert len(kept) == 3
    assert kept[0] == newest
    assert oldest in world.replicas  # its Deployment is still there to go back to
    assert middle not in world.replicas


def test_rollback_to_mid_canary_aborts_the_candidate_first() -> None:
    world = in_canary()
    stable = world.status.stable_revision
    assert stable is not None
    accepted, _ = act(world, "rollback", "rb", stable)
    assert accepted
    world.run(lambda w: w.status.restoring is None)
    assert world.route == {stable: 100}
    assert world.status.canary_revision is None
