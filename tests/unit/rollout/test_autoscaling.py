"""Autoscaled revisions: the HPA owns each running revision's replica count.

The simulated world runs an HPA controller (within its bounds, as its load
says, never from zero), and records every replica count the operator itself
sets and every weight shift with the ready pods of each revision at that
moment. The operator may start a revision (or wake it from zero) and scale a
retired one to zero; everything between is the HPA's choice.
"""

from __future__ import annotations

import math

import pytest

from modelcanary.api.modeldeployment import Autoscaling, ModelDeploymentSpec
from modelcanary.rollout.autoscaling import canary_floor, stable_floor
from modelcanary.rollout.decision import DeleteAutoscaler, EnsureRevision, ScaleRevision
from modelcanary.rollout.observations import ManualAction, RevisionObservation
from tests.unit.rollout.test_canary import bad_error_rate
from tests.unit.rollout.world import World, spec_dict

pytestmark = pytest.mark.unit


def autoscaled(
    version: str, *, minimum: int = 1, maximum: int = 20, scale_down_delay: str = "30s"
) -> ModelDeploymentSpec:
    raw = spec_dict()
    raw["predictor"]["model"].update(version=version, uri=f"s3://m/{version}")
    raw["predictor"]["autoscaling"] = {"minReplicas": minimum, "maxReplicas": maximum}
    raw["strategy"]["scaleDownDelay"] = scale_down_delay
    return ModelDeploymentSpec.model_validate(raw)


def serving(spec: ModelDeploymentSpec, load: int) -> tuple[World, str]:
    world = World(spec)
    world.run(lambda w: w.status.phase == "Healthy")
    stable = world.spec.predictor.revision()
    world.load[stable] = load
    world.step()
    assert world.replicas[stable] == load
    world.replica_writes.clear()
    return world, stable


def promoted(world: World) -> bool:
    return world.status.phase == "Healthy" and world.status.stable_revision == (
        world.spec.predictor.revision()
    )


def test_a_revision_starts_within_its_bounds_and_its_hpa_then_owns_the_count() -> None:
    world = World(autoscaled("1.0.0", minimum=3, maximum=10))  # predictor.replicas is 2
    world.run(lambda w: w.status.phase == "Healthy")
    stable = world.spec.predictor.revision()
    assert world.replica_writes == [(stable, 3)]
    assert world.autoscalers == {stable: (3, 10)}
    for load in (7, 10, 4):
        world.load[stable] = load
        world.step()
        assert world.replicas[stable] == load
        for _ in range(5):
            decision = world.step()
            assert not [a for a in decision.actions if isinstance(a, EnsureRevision)]
        assert world.replicas[stable] == load
    assert world.replica_writes == [(stable, 3)]


def test_the_candidates_floor_follows_its_weight_before_the_weight_moves() -> None:
    world, stable = serving(autoscaled("1.0.0"), load=8)
    world.roll_out(autoscaled("1.1.0"))
    canary = world.spec.predictor.revision()
    minimums: list[int] = []

    def track(w: World) -> bool:
        if canary in w.autoscalers and (not minimums or minimums[-1] != w.autoscalers[canary][0]):
            minimums.append(w.autoscalers[canary][0])
        return promoted(w)

    world.run(track)
    # ceil(10% of 8), ceil(50% of 8), 100% of 8: raised, never lowered.
    assert minimums[:3] == [1, 4, 8]
    for weights, ready in world.shifts:
        if canary in weights and stable in weights:
            assert ready.get(canary, 0) >= math.ceil(weights[canary] * 8 / 100), (weights, ready)
    # The old stable stays warm, its HPA with it, through strategy.scaleDownDelay ...
    assert world.replica_writes == [(canary, 1)]
    assert stable in world.autoscalers
    world.run(lambda w: stable not in w.autoscalers)
    # ... then it is retired. The operator started the candidate and retired the old
    # stable; nothing else.
    assert world.replica_writes == [(canary, 1), (stable, 0)]


def test_the_floor_does_not_follow_a_shrinking_stable_down() -> None:
    world, stable = serving(autoscaled("1.0.0"), load=10)
    world.roll_out(autoscaled("1.1.0"))
    canary = world.spec.predictor.revision()
    world.run(lambda w: w.status.canary_weight == 50)
    assert world.autoscalers[canary][0] == 5
    world.load[stable] = 2  # traffic left it, its HPA shrinks it
    world.run(lambda w: w.replicas[stable] == 2)
    world.run(lambda w: w.status.canary_weight == 100)
    assert world.autoscalers[canary][0] == 5


def test_promotion_keeps_the_new_stable_at_least_as_large_as_the_old_one() -> None:
    world, stable = serving(autoscaled("1.0.0", minimum=2), load=6)
    # No warm window: the old stable is retired at promotion.
    world.roll_out(autoscaled("1.1.0", minimum=2, scale_down_delay="0s"))
    canary = world.spec.predictor.revision()
    world.run(promoted)
    # It took 100% with six pods ready; with the floor met, the user's minimum is back,
    # and the HPA, not the operator, decides when to go below six.
    assert world.replicas[canary] == 6
    world.step()
    assert world.autoscalers[canary] == (2, 20)
    assert world.replicas[canary] == 6
    retire = [a for d in world.decisions for a in d.actions if getattr(a, "revision", "") == stable]
    assert retire[-2:] == [DeleteAutoscaler(stable), ScaleRevision(stable, 0)]


def test_a_promoted_canary_keeps_its_floor_until_it_has_those_pods_ready() -> None:
    """flagger#1600: the new stable must not drop to minReplicas at promotion."""
    scaling = Autoscaling(min_replicas=2, max_replicas=20)
    short = RevisionObservation(
        "r", desired_replicas=8, ready_replicas=5, autoscaler_min_replicas=8
    )
    assert stable_floor(scaling, short) == 8
    caught_up = RevisionObservation(
        "r", desired_replicas=8, ready_replicas=8, autoscaler_min_replicas=8
    )
    assert stable_floor(scaling, caught_up) == 2
    assert stable_floor(scaling, None) == 2


@pytest.mark.parametrize(
    ("weight", "stable", "held", "expected"),
    [
        (0, 8, None, 2),  # the user's minimum
        (10, 8, None, 2),
        (50, 9, None, 5),  # rounded up
        (100, 30, None, 20),  # at most maxReplicas
        (50, None, None, 2),  # no stable to size against
        (10, 8, 6, 6),  # never lowered during a canary
    ],
)
def test_canary_floor(weight: int, stable: int | None, held: int | None, expected: int) -> None:
    scaling = Autoscaling(min_replicas=2, max_replicas=20)
    seen = RevisionObservation("c", autoscaler_min_replicas=held) if held is not None else None
    assert canary_floor(scaling, weight=weight, stable_replicas=stable, seen=seen) == expected


def test_a_rollback_leaves_the_stables_hpa_and_count_alone() -> None:
    world, stable = serving(autoscaled("1.0.0", minimum=2), load=5)
    world.roll_out(autoscaled("1.1.0", minimum=2))
    bad = world.spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    world.step()
    assert world.autoscalers == {stable: (2, 20)}
    assert world.replicas[stable] == 5
    assert world.replicas[bad] == 0
    assert [w for w in world.replica_writes if w[0] == stable] == []


def test_a_retired_revision_restored_by_hand_gets_its_hpa_back_and_is_woken() -> None:
    world, first = serving(autoscaled("1.0.0", minimum=3), load=4)
    world.roll_out(autoscaled("1.1.0", minimum=3, scale_down_delay="0s"))
    world.run(promoted)
    assert world.replicas[first] == 0
    assert first not in world.autoscalers
    world.step(ManualAction("rollback", "r1", first))
    world.run(lambda w: w.status.stable_revision == first and w.status.restoring is None)
    assert world.autoscalers[first] == (3, 20)
    # Woken at predictor.replicas (2) raised to minReplicas: an HPA never scales from zero.
    assert (first, 3) in world.replica_writes
