"""The decision core, scenario by scenario: each test is a sequence of passes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelcanary.analysis.samples import Sample
from modelcanary.api.modeldeployment import (
    MAX_HISTORY,
    DrillSummary,
    ModelDeploymentStatus,
    RevisionOutcome,
)
from modelcanary.api.validation import FieldError
from modelcanary.rollout.decide import FIRST_REVISION_NOTE, decide, decide_invalid
from modelcanary.rollout.decision import ScaleRevision, SetWeights
from modelcanary.rollout.observations import ActiveDrill, ManualAction, Observations
from tests.unit.rollout.world import (
    T0,
    World,
    healthy_metrics,
    make_spec,
    serving_first_revision,
    strategy,
)

pytestmark = pytest.mark.unit


def bad_error_rate(metric: str, revision: str, *, bad: str) -> Sample:
    if metric == "error-rate" and revision == bad:
        return Sample.of(0.2)
    return healthy_metrics(metric, revision)


def test_first_revision_goes_straight_to_100_and_says_why() -> None:
    world = World(make_spec("1.0.0"))
    first = world.step()
    revision = world.spec.predictor.revision()
    assert world.replicas == {revision: 2}
    assert first.status.phase == "Progressing"
    world.run(lambda w: w.status.phase == "Healthy")
    status = world.status
    assert status.stable_revision == revision
    assert status.last_known_good is not None
    assert status.last_known_good.revision == revision
    assert status.last_known_good.evidence == []
    assert status.last_known_good.note == FIRST_REVISION_NOTE
    assert world.route == {revision: 100}
    assert [e.outcome for e in status.history] == [RevisionOutcome.PROMOTED]
    assert "FirstRevision" in world.events()
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"


def test_the_pass_after_the_first_revision_is_healthy_has_nothing_to_write() -> None:
    # Found by bench-scale at 1,000 objects: the promoting pass wrote a message
    # that the next pass at rest shortened, so every new object cost one more
    # status write (and the re-reads before it) minutes after it was Healthy.
    world = serving_first_revision()
    healthy = world.status
    for _ in range(3):
        decision = world.step()
        assert decision.actions == ()
        assert decision.status == healthy
    assert FIRST_REVISION_NOTE in next(
        e.message for d in world.decisions for e in d.events if e.reason == "Promoted"
    )


def test_good_candidate_walks_every_step_bakes_and_is_promoted() -> None:
    world = serving_first_revision()
    old = world.status.stable_revision
    world.roll_out(make_spec("1.1.0"))
    new = world.spec.predictor.revision()
    seen_weights: list[int] = []

    def track(w: World) -> bool:
        if w.status.canary_revision and (
            not seen_weights or seen_weights[-1] != w.status.canary_weight
        ):
            seen_weights.append(w.status.canary_weight)
        return w.status.phase == "Healthy" and w.status.stable_revision == new

    world.run(track)
    assert seen_weights == [0, 10, 50, 100]
    status = world.status
    assert status.last_known_good is not None
    assert status.last_known_good.revision == new
    assert {r.metric for r in status.last_known_good.evidence} == {"error-rate", "latency"}
    assert all(r.verdict == "Pass" for r in status.last_known_good.evidence)
    assert [(e.revision, e.outcome) for e in status.history] == [
        (new, RevisionOutcome.PROMOTED),
        (old, RevisionOutcome.PROMOTED),
    ]
    assert world.route == {new: 100}
    assert old is not None
    assert world.replicas[old] == 2  # warm for strategy.scaleDownDelay after the promotion
    world.run(lambda w: w.replicas[old] == 0, passes=8)  # 30s by default, 5s a pass
    assert world.roles[new] == "stable"
    events = world.events()
    canary_events = events[events.index("CanaryStarted") :]
    assert canary_events.count("WeightSet") == 3
    assert canary_events[-1] == "Promoted"


def test_old_revision_stays_warm_through_the_bake() -> None:
    world = serving_first_revision()
    old = world.status.stable_revision
    assert old is not None
    world.roll_out(make_spec("1.1.0"))
    world.run(lambda w: w.status.phase == "Baking")
    assert world.replicas[old] == 2
    assert world.route is not None
    assert world.route[world.spec.predictor.revision()] == 100


def test_a_step_advances_only_after_the_router_reads_the_weight_back() -> None:
    world = serving_first_revision()
    world.router_lag = 3
    world.roll_out(make_spec("1.1.0"))
    world.run(lambda w: any(isinstance(a, SetWeights) for a in w.decisions[-1].actions))
    asked_at = len(world.decisions)
    world.run(lambda w: w.status.canary_weight == 10)
    # The weight was asked for once and confirmed only after the router's lag.
    assert len(world.decisions) - asked_at >= 3
    assert world.status.current_step == 1


def test_no_step_toward_the_candidate_while_the_router_cannot_be_read() -> None:
    world = serving_first_revision()
    stable = world.status.stable_revision
    world.router_error = "httproutes fraud: 503 Service Unavailable"
    world.roll_out(make_spec("1.1.0"))
    for _ in range(10):
        decision = world.step()
        assert not any(isinstance(a, SetWeights) for a in decision.actions)
    assert world.route == {stable: 100}
    assert world.status.canary_weight == 0
    assert "waiting for the router before setting 10%" in world.status.message
    assert "503" in world.status.message
    world.router_error = None
    world.run(lambda w: w.status.canary_weight == 10)


def test_a_rollback_still_asks_for_stable_while_the_router_cannot_be_read() -> None:
    """The drill's rule too: all traffic back to known-good is one absolute, repeatable request."""
    world = serving_first_revision()
    stable = world.status.stable_revision
    assert stable is not None
    world.roll_out(make_spec("1.1.0"))
    world.run(lambda w: w.status.canary_weight == 10)
    bad = world.spec.predictor.revision()
    world.router_error = "httproutes fraud: 503 Service Unavailable"
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    assert SetWeights.of({stable: 100}) in world.decisions[-1].actions
    assert world.route == {stable: 100}


def test_failing_candidate_is_rolled_back_at_the_first_step_in_one_router_update() -> None:
    world = serving_first_revision()
    stable = world.status.stable_revision
    world.roll_out(make_spec("1.1.0"))
    bad = world.spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    decision = world.decisions[-1]
    weights = [a for a in decision.actions if isinstance(a, SetWeights)]
    assert weights == [SetWeights.of({stable: 100})]  # type: ignore[dict-item]
    assert ScaleRevision(bad, 0) in decision.actions
    assert world.route == {stable: 100}
    assert world.status.stable_revision == stable
    assert world.status.canary_revision is None
    assert "error-rate: 0.2 > max 0.01" in world.status.message
    entry = next(e for e in world.status.history if e.revision == bad)
    assert entry.outcome is RevisionOutcome.ROLLED_BACK
    assert "0.2 > max 0.01" in entry.reason
    assert world.replicas[bad] == 0  # kept for inspection, at zero
    conditions = {c.type: c for c in world.status.conditions}
    assert conditions["Degraded"].status == "True"
    assert conditions["AnalysisHealthy"].status == "False"


def test_failure_limit_tolerates_that_many_failed_evaluations() -> None:
    world = serving_first_revision(make_spec("1.0.0"))
    raw = make_spec("1.1.0").model_dump(by_alias=True)
    raw["analysis"]["failureLimit"] = 1
    spec = type(world.spec).model_validate(raw)
    world.roll_out(spec)
    bad = spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    assert world.events().count("AnalysisFailed") == 1
    rolled = next(e for e in world.status.history if e.revision == bad)
    assert rolled.outcome is RevisionOutcome.ROLLED_BACK


def test_relative_to_stable_bound_catches_a_slower_candidate() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    slow = world.spec.predictor.revision()
    world.metrics = lambda m, r: (
        Sample.of(0.3 if r == slow else 0.1) if m == "latency" else Sample.of(0.0)
    )
    world.run(lambda w: w.status.phase == "RolledBack")
    assert "latency: 0.3 > 1.5 x stable 0.1" in world.status.message


@pytest.mark.parametrize("no_data", [None, float("nan"), float("inf"), float("-inf")])
def test_no_data_holds_and_is_never_promoted(no_data: float | None) -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    world.metrics = lambda m, r: Sample.of(no_data)
    for _ in range(200):
        world.step(advance=timedelta(seconds=10))
    assert world.status.canary_revision == world.spec.predictor.revision()
    assert world.status.canary_weight == 10  # held at the first step, never advanced
    assert world.status.analysis is not None
    assert world.status.analysis.outcome == "NoData"
    assert world.events().count("Promoted") == 1  # the first revision only
    assert "RolledBack" not in world.events()
    # Data returns: the rollout goes on to promotion.
    world.metrics = healthy_metrics
    world.run(lambda w: w.status.phase == "Healthy")


@pytest.mark.parametrize(("policy", "ends_in"), [("fail", "RolledBack"), ("pass", "Healthy")])
def test_no_data_policy(policy: str, ends_in: str) -> None:
    world = serving_first_revision()
    raw = make_spec("1.1.0").model_dump(by_alias=True)
    raw["analysis"]["noData"] = policy
    world.roll_out(type(world.spec).model_validate(raw))
    world.metrics = lambda m, r: Sample.of(None)
    world.run(lambda w: w.status.phase == ends_in and w.status.canary_revision is None)


def test_too_little_traffic_is_no_data_not_a_pass() -> None:
    world = serving_first_revision()
    raw = make_spec("1.1.0").model_dump(by_alias=True)
    raw["analysis"]["minSamples"] = {"query": "count", "value": 50}
    world.roll_out(type(world.spec).model_validate(raw))
    world.samples = 3.0
    for _ in range(100):
        world.step(advance=timedelta(seconds=10))
    assert world.status.canary_weight == 10
    assert world.status.analysis is not None
    assert world.status.analysis.outcome == "NoData"
    assert "too little traffic: 3 < 50 samples" in world.status.analysis.reason
    world.samples = 500.0
    world.run(lambda w: w.status.phase == "Healthy")


def test_prometheus_outage_holds_without_rollback_or_advance_then_continues() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    world.run(
        lambda w: (
            w.status.canary_weight == 10
            and (w.status.analysis.evaluations if w.status.analysis else 0) > 0
        )
    )
    world.prometheus_online = False
    step_before = world.status.current_step
    for _ in range(50):  # 250 s: within outage.holdFor (5m)
        world.step()
    assert world.status.current_step == step_before
    assert world.status.canary_weight == 10
    assert world.status.phase == "Progressing"
    assert "Prometheus is unreachable" in world.status.message
    assert "RolledBack" not in world.events()
    conditions = {c.type: c.status for c in world.status.conditions}
    assert conditions["AnalysisHealthy"] == "Unknown"
    world.prometheus_online = True
    world.run(lambda w: w.status.phase == "Healthy")


def test_a_query_that_times_out_is_an_outage_not_a_failure() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    world.metrics = lambda m, r: Sample.failed("Prometheus did not answer within 5s")
    for _ in range(40):
        world.step()
    assert world.status.analysis is not None
    assert world.status.analysis.outcome == "Outage"
    assert world.status.analysis.failures == 0
    assert "RolledBack" not in world.events()


@pytest.mark.parametrize(
    ("then", "phase"), [("rollback", "RolledBack"), ("pause", "Paused"), ("hold", "Progressing")]
)
def test_outage_then_applies_after_hold_for(then: str, phase: str) -> None:
    world = serving_first_revision()
    raw = make_spec("1.1.0").model_dump(by_alias=True)
    raw["analysis"]["outage"] = {"holdFor": "1m", "then": then}
    world.roll_out(type(world.spec).model_validate(raw))
    world.run(lambda w: w.status.canary_weight == 10)
    world.prometheus_online = False
    for _ in range(40):
        world.step()
    assert world.status.phase == phase
    if then == "rollback":
        assert "Prometheus unavailable for 1m" in world.status.message


def test_fault_during_the_bake_reverts_to_the_previous_last_known_good() -> None:
    world = serving_first_revision()
    previous = world.status.stable_revision
    world.roll_out(make_spec("1.1.0"))
    candidate = world.spec.predictor.revision()
    world.run(lambda w: w.status.phase == "Baking")
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=candidate)
    world.run(lambda w: w.status.phase == "RolledBack")
    assert world.route == {previous: 100}
    assert world.status.last_known_good is not None
    assert world.status.last_known_good.revision == previous


def test_a_new_revision_mid_canary_aborts_the_current_one_and_starts_anew() -> None:
    world = serving_first_revision()
    stable = world.status.stable_revision
    world.roll_out(make_spec("1.1.0"))
    first = world.spec.predictor.revision()
    world.run(lambda w: w.status.canary_weight == 10)
    world.roll_out(make_spec("1.2.0"))
    second = world.spec.predictor.revision()
    decision = world.step()
    assert SetWeights.of({stable: 100}) in decision.actions  # type: ignore[dict-item]
    assert ScaleRevision(first, 0) in decision.actions
    assert world.status.canary_revision == second
    assert (
        next(e for e in world.status.history if e.revision == first).outcome
        is RevisionOutcome.SUPERSEDED
    )
    world.run(lambda w: w.status.phase == "Healthy" and w.status.stable_revision == second)


def test_reapplying_a_rolled_back_predictor_does_not_retry_it_unless_asked() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    bad = world.spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    world.metrics = healthy_metrics
    for _ in range(20):
        world.step()
    assert world.status.phase == "RolledBack"
    assert world.status.canary_revision is None
    assert "change spec.predictor, or retry it" in world.status.message
    retried = world.step(action=_action("retry", "r1")).status
    assert retried.canary_revision == bad
    assert retried.last_action is not None
    assert retried.last_action.accepted
    world.run(lambda w: w.status.phase == "Healthy" and w.status.stable_revision == bad)


def test_a_later_predictor_change_starts_a_new_canary_after_a_rollback() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    bad = world.spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "RolledBack")
    world.roll_out(make_spec("1.2.0"))
    world.step()
    assert world.status.canary_revision == world.spec.predictor.revision()


def test_without_analysis_a_canary_walks_its_steps_and_says_it_had_no_evidence() -> None:
    world = serving_first_revision(make_spec("1.0.0", analysis=None))
    world.roll_out(make_spec("1.1.0", analysis=None))
    world.run(
        lambda w: (
            w.status.phase == "Healthy" and w.status.stable_revision == w.spec.predictor.revision()
        )
    )
    assert world.status.last_known_good is not None
    assert "without metric evidence" in world.status.last_known_good.note


def test_automatic_rollback_off_stops_in_failed_and_keeps_traffic() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0", rollback={"automatic": False}))
    bad = world.spec.predictor.revision()
    world.metrics = lambda m, r: bad_error_rate(m, r, bad=bad)
    world.run(lambda w: w.status.phase == "Failed")
    assert world.route is not None
    assert world.route.get(bad) == 10
    world.step(action=_action("abort", "a1"))
    assert world.status.phase == "RolledBack"


def test_invalid_spec_gives_a_condition_and_no_action() -> None:
    status = ModelDeploymentStatus(stable_revision="abc", phase="Healthy")
    errors = [FieldError("spec.strategy.steps", "the last setWeight must be 100")]
    decision = decide_invalid(status, errors, T0, generation=3)
    assert decision.actions == ()
    assert decision.status.phase == "Invalid"
    assert decision.status.stable_revision == "abc"
    invalid = next(c for c in decision.status.conditions if c.type == "InvalidSpec")
    assert invalid.status == "True"
    assert invalid.message == "spec.strategy.steps: the last setWeight must be 100"
    assert [e.reason for e in decision.events] == ["InvalidSpec"]
    again = decide_invalid(decision.status, errors, T0 + timedelta(seconds=5), generation=3)
    assert again.events == ()  # said once, not every pass


def test_history_is_trimmed_but_last_known_good_is_kept() -> None:
    world = serving_first_revision(make_spec("1.0.0", revisionHistoryLimit=2))
    for minor in range(1, 5):
        world.roll_out(make_spec(f"1.{minor}.0", revisionHistoryLimit=2))
        world.run(
            lambda w: (
                w.status.phase == "Healthy"
                and w.status.stable_revision == w.spec.predictor.revision()
            )
        )
    assert len(world.status.history) == 2
    assert world.status.last_known_good is not None
    assert world.status.history[0].revision == world.status.last_known_good.revision


def test_at_the_largest_history_limit_entries_in_use_are_kept_and_the_status_still_writes() -> None:
    """A stable revision older than revisionHistoryLimit newer entries stays in the history
    (it is in use), so the history may hold more than the limit: the status schema must
    take that, or every status write of such an object would be refused."""
    world = serving_first_revision(make_spec("1.0.0", revisionHistoryLimit=MAX_HISTORY))
    stable = world.status.history[0]
    failed = [
        stable.model_copy(
            update={"revision": f"failed{index:04d}", "outcome": RevisionOutcome.ROLLED_BACK}
        )
        for index in range(MAX_HISTORY)
    ]
    world.status.history = [*failed, stable]
    world.step()
    assert len(world.status.history) == MAX_HISTORY + 1
    assert world.status.history[-1].revision == world.status.stable_revision
    written = world.status.to_dict()
    assert ModelDeploymentStatus.model_validate(written).history[-1].revision == stable.revision


def test_replicas_router_confirms_the_weights_its_granularity_allows() -> None:
    spec = make_spec("1.0.0", traffic={"replicas": {}})
    raw = spec.model_dump(by_alias=True)
    raw["predictor"]["replicas"] = 4
    world = serving_first_revision(type(spec).model_validate(raw))
    raw["predictor"]["model"]["version"] = "1.1.0"
    world.roll_out(type(spec).model_validate(raw))
    weights: list[int] = []

    def promoted(w: World) -> bool:
        weights.append(w.status.canary_weight)
        return (
            w.status.phase == "Healthy" and w.status.stable_revision == w.spec.predictor.revision()
        )

    world.run(promoted)
    # 10% of 4 replicas is one pod (25%); 50% is two pods.
    assert sorted(set(weights)) == [0, 25, 50, 100]


def test_steady_state_repairs_weight_drift() -> None:
    world = serving_first_revision()
    stable = world.status.stable_revision
    assert stable is not None
    world.route = {stable: 90, "someone-else": 10}
    world.step()
    assert world.route == {stable: 100}
    assert "WeightDrift" in world.events()


def test_the_same_inputs_give_the_same_decision() -> None:
    spec = make_spec("1.0.0")
    status = ModelDeploymentStatus()
    first = decide(spec, status, Observations(), T0, generation=1)
    second = decide(spec, status, Observations(), T0, generation=1)
    assert first == second
    assert status == ModelDeploymentStatus()  # the input is never changed


def _action(kind: str, action_id: str, revision: str | None = None) -> ManualAction:
    return ManualAction(kind=kind, id=action_id, revision=revision)


def test_relative_bounds_use_stable_baseline_once_stable_takes_no_traffic() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    stable = world.status.stable_revision

    def metrics(metric: str, revision: str) -> Sample:
        at_full = world.status.canary_weight == 100
        if revision == stable and at_full:
            return Sample.of(None)  # no traffic left for stable to report on
        return Sample.of(0.1) if metric == "latency" else Sample.of(0.001)

    world.metrics = metrics
    world.run(lambda w: w.status.phase == "Healthy" and w.status.stable_revision != stable)
    assert world.status.last_known_good is not None
    latency = next(r for r in world.status.last_known_good.evidence if r.metric == "latency")
    assert latency.stable == 0.1


def test_without_any_stable_baseline_a_relative_bound_holds() -> None:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    stable = world.status.stable_revision
    world.metrics = lambda m, r: Sample.of(None) if r == stable else Sample.of(0.001)
    for _ in range(60):
        world.step(advance=timedelta(seconds=10))
    assert world.status.canary_weight == 10
    assert world.status.analysis is not None
    assert "no data for the stable revision" in world.status.analysis.reason


def test_a_running_drill_owns_the_split_and_a_new_canary_waits_for_it() -> None:
    world = serving_first_revision()
    stable = world.status.stable_revision
    assert stable is not None
    world.drill = ActiveDrill(name="drill-1", target="older")
    world.replicas["older"] = 2
    world.route = {stable: 95, "older": 5}
    world.step()
    assert world.route == {stable: 95, "older": 5}  # no "drift repair" during a drill
    assert world.replicas["older"] == 2  # the drill's target is not scaled away
    world.roll_out(make_spec("1.1.0"))
    world.step()
    assert world.status.canary_revision is None
    assert "waiting for drill drill-1" in world.status.message
    world.drill = None
    world.step()
    assert world.status.canary_revision == world.spec.predictor.revision()


def test_rollback_ready_follows_the_last_drill() -> None:
    world = serving_first_revision()
    conditions = {c.type: c.status for c in world.status.conditions}
    assert conditions["RollbackReady"] == "Unknown"
    world.status.last_drill = DrillSummary(
        name="d1", mode="verify", succeeded=False, started_at=T0, reason="never Ready"
    )
    world.step()
    ready = next(c for c in world.status.conditions if c.type == "RollbackReady")
    assert (ready.status, ready.reason) == ("False", "DrillFailed")
    assert "never Ready" in ready.message


@pytest.mark.parametrize("pause", [{}, {"duration": "1h"}], ids=["until-promoted", "timed"])
def test_the_pass_that_enters_a_pause_at_a_new_weight_wakes_for_the_first_look(
    pause: dict[str, str],
) -> None:
    # Found by bench-scale: threshold-only canaries that never looked. The pass
    # that confirmed 10% and entered the pause asked whether a look was due of
    # the status it found (weight 0: nothing due) and slept the safety resync.
    steps = [{"setWeight": 10}, {"pause": pause}, {"setWeight": 100}]
    world = serving_first_revision(make_spec("1.0.0", strategy=strategy(steps=steps)))
    world.roll_out(make_spec("2.0.0", strategy=strategy(steps=steps)))
    world.run(lambda w: w.status.canary_weight == 10)
    entered = world.decisions[-1]
    assert entered.status.current_step == 1  # the same pass is in the pause (step 1)
    assert "paus" in entered.status.message
    assert entered.status.analysis is None or entered.status.analysis.last_run_at is None
    assert entered.requeue_after <= 0.5
