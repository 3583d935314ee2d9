"""strategy.progressDeadline, pass by pass: a candidate that is not Available in time is
aborted back to stable, naming what was not ready; nothing waits forever."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelcanary import telemetry
from modelcanary.api.modeldeployment import ModelDeploymentSpec, RevisionOutcome
from modelcanary.rollout.decision import ScaleRevision, SetWeights
from modelcanary.rollout.observations import ManualAction
from tests.unit.rollout.world import World, make_spec, serving_first_revision, strategy

pytestmark = pytest.mark.unit

DEADLINE = timedelta(minutes=1)


def deadline_spec(version: str, **overrides: object) -> ModelDeploymentSpec:
    fields = {"strategy": strategy(progressDeadline="1m"), **overrides}
    return make_spec(version, **fields)


def start_broken_canary(world: World, version: str = "1.1.0") -> str:
    world.roll_out(deadline_spec(version))
    candidate = world.spec.predictor.revision()
    world.broken.add(candidate)
    world.step()
    assert world.status.canary_revision == candidate
    return candidate


def test_a_candidate_never_available_is_aborted_naming_what_was_not_ready() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    stable = world.status.stable_revision
    candidate = start_broken_canary(world)
    started = world.status.canary_unavailable_since
    assert started is not None
    world.problems[candidate] = 'ReplicaFailure: pods "fraud-x" is forbidden: exceeded quota'

    world.run(lambda w: w.now >= started + DEADLINE - timedelta(seconds=5))
    world.step()  # the last pass before the deadline still waits
    assert world.status.canary_revision == candidate
    assert "waiting for candidate" in world.status.message

    world.run(lambda w: w.status.canary_revision is None, passes=3)
    assert world.now - started <= DEADLINE + timedelta(seconds=10)
    decision = world.decisions[-1]
    assert [a for a in decision.actions if isinstance(a, SetWeights)] == [
        SetWeights.of({stable: 100})  # type: ignore[dict-item]
    ]
    assert ScaleRevision(candidate, 0) in decision.actions
    entry = next(e for e in world.status.history if e.revision == candidate)
    assert entry.outcome is RevisionOutcome.ABORTED
    assert entry.reason.startswith("progress deadline 1m exceeded")
    assert "0/2 replicas ready" in entry.reason
    assert "exceeded quota" in entry.reason
    assert [(e.type, e.reason) for e in decision.events] == [
        ("Warning", "ProgressDeadlineExceeded")
    ]
    assert world.status.phase == "RolledBack"
    assert world.status.stable_revision == stable
    assert world.status.canary_unavailable_since is None
    assert world.route == {stable: 100}
    degraded = {c.type: c for c in world.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "ProgressDeadlineExceeded")
    assert "0/2 replicas ready" in degraded.message


def test_the_clock_runs_from_when_the_candidate_stopped_being_available_mid_canary() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    world.roll_out(deadline_spec("1.1.0"))
    candidate = world.spec.predictor.revision()
    world.run(lambda w: w.status.canary_weight == 50)
    assert world.status.canary_unavailable_since is None  # Available: no clock
    world.broken.add(candidate)
    broke = world.step().status.canary_unavailable_since
    assert broke is not None
    world.run(lambda w: w.now >= broke + DEADLINE - timedelta(seconds=5))
    world.step()
    assert world.status.canary_revision == candidate  # not the canary's start: its break
    world.run(lambda w: w.status.canary_revision is None, passes=3)
    assert world.status.history[0].outcome is RevisionOutcome.ABORTED


def test_a_candidate_available_again_in_time_gets_a_fresh_deadline_and_is_promoted() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    candidate = start_broken_canary(world)
    world.run(lambda w: w.now >= (w.status.canary_unavailable_since or w.now) + DEADLINE * 0.8)
    world.broken.discard(candidate)
    world.step()
    assert world.status.canary_unavailable_since is None
    world.run(lambda w: w.status.stable_revision == candidate and w.status.phase == "Healthy")
    assert "ProgressDeadlineExceeded" not in world.events()


def test_the_aborted_revision_waits_and_the_next_predictor_starts_a_fresh_canary() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    candidate = start_broken_canary(world)
    world.run(lambda w: w.status.canary_revision is None)
    for _ in range(30):  # well past another deadline: the same revision is not tried again
        world.step()
    assert world.status.canary_revision is None
    assert "change spec.predictor, or retry it" in world.status.message
    assert world.replicas[candidate] == 0
    degraded = {c.type: c for c in world.status.conditions}["Degraded"]
    assert degraded.reason == "ProgressDeadlineExceeded"  # still, while the spec asks for it

    world.roll_out(deadline_spec("1.2.0"))
    fixed = world.spec.predictor.revision()
    started = world.step().status
    assert started.canary_revision == fixed
    assert started.canary_unavailable_since == world.now - timedelta(seconds=5)
    world.run(lambda w: w.status.stable_revision == fixed and w.status.phase == "Healthy")
    assert [e.outcome for e in world.status.history[:2]] == [
        RevisionOutcome.PROMOTED,
        RevisionOutcome.ABORTED,
    ]


def test_retry_of_an_aborted_revision_starts_its_clock_afresh() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    candidate = start_broken_canary(world)
    world.run(lambda w: w.status.canary_revision is None)
    world.broken.discard(candidate)
    retried = world.step(action=ManualAction("retry", "r1")).status
    assert retried.canary_revision == candidate
    assert retried.canary_unavailable_since == world.now - timedelta(seconds=5)
    world.run(lambda w: w.status.stable_revision == candidate and w.status.phase == "Healthy")


def test_a_restarted_operator_keeps_the_clock_from_the_status() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    start_broken_canary(world)
    world.run(lambda w: w.now >= (w.status.canary_unavailable_since or w.now) + DEADLINE / 2)
    # A new operator process: nothing but the stored status and the cluster.
    restarted = World(
        world.spec,
        status=world.status.model_copy(deep=True),
        now=world.now + DEADLINE / 2,
        replicas=dict(world.replicas),
        roles=dict(world.roles),
        broken=set(world.broken),
        route=dict(world.route or {}),
    )
    restarted.step()
    assert restarted.status.canary_revision is None
    assert restarted.status.history[0].outcome is RevisionOutcome.ABORTED


def test_a_person_pausing_stops_the_clock_and_resume_restarts_it_in_full() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    candidate = start_broken_canary(world)
    world.step(action=ManualAction("pause", "p1"))
    for _ in range(30):  # 2.5 minutes paused: more than the deadline
        world.step()
    assert world.status.canary_revision == candidate
    assert world.status.canary_unavailable_since is None
    resumed = world.step(action=ManualAction("resume", "r1")).status.canary_unavailable_since
    assert resumed is not None
    world.run(lambda w: w.status.canary_revision is None)
    assert world.now - resumed >= DEADLINE


def test_with_automatic_rollback_off_it_stops_in_failed_and_leaves_traffic_alone() -> None:
    world = serving_first_revision(deadline_spec("1.0.0"))
    stable = world.status.stable_revision
    world.roll_out(deadline_spec("1.1.0", rollback={"automatic": False}))
    candidate = world.spec.predictor.revision()
    world.broken.add(candidate)
    world.run(lambda w: w.status.phase == "Failed")
    for _ in range(5):
        world.step()
    assert world.status.canary_revision == candidate
    assert world.status.message.startswith("progress deadline 1m exceeded")
    assert "automatic rollback is off" in world.status.message
    assert world.route == {stable: 100}
    assert world.replicas[candidate] == 2  # kept for a person to look at
    assert world.events().count("ProgressDeadlineExceeded") == 1
    degraded = {c.type: c for c in world.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason) == ("True", "ProgressDeadlineExceeded")
    world.step(action=ManualAction("abort", "a1"))
    assert world.status.phase == "RolledBack"


def replicas_spec(version: str, steps: list[dict[str, object]]) -> ModelDeploymentSpec:
    spec = make_spec(
        version,
        traffic={"replicas": {}},
        strategy=strategy(steps=steps, progressDeadline="1m"),
        analysis=None,
    )
    raw = spec.model_dump(by_alias=True)
    raw["predictor"]["replicas"] = 4
    return ModelDeploymentSpec.model_validate(raw)


def test_replicas_router_runs_the_clock_only_while_the_candidate_has_replicas_to_fill() -> None:
    steps: list[dict[str, object]] = [
        {"setWeight": 0},
        {"pause": {"duration": "3m"}},
        {"setWeight": 50},
        {"setWeight": 100},
    ]
    world = serving_first_revision(replicas_spec("1.0.0", steps))
    world.roll_out(replicas_spec("1.1.0", steps))
    candidate = world.spec.predictor.revision()
    world.broken.add(candidate)
    world.run(lambda w: w.status.current_step == 2)  # three minutes at 0% without a pod
    assert "ProgressDeadlineExceeded" not in world.events()
    world.run(lambda w: w.status.canary_revision is None)
    entry = world.status.history[0]
    assert entry.outcome is RevisionOutcome.ABORTED
    assert "0/2 replicas ready" in entry.reason
    assert world.replicas[candidate] == 0


def test_the_deadline_event_counts_in_the_exported_metric() -> None:
    before = telemetry.PROGRESS_DEADLINES.labels("ns", "fraud")._value.get()
    telemetry.record_events("ns", "fraud", ["CanaryStarted", "ProgressDeadlineExceeded"])
    assert telemetry.PROGRESS_DEADLINES.labels("ns", "fraud")._value.get() == before + 1


def test_a_deadline_below_one_second_is_refused() -> None:
    with pytest.raises(ValueError, match="progressDeadline must be at least 1s"):
        deadline_spec("1.0.0", strategy=strategy(progressDeadline="500ms"))
