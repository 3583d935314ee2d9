"""The rollback drill plan, pass by pass, on a simulated world."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcanary.analysis.samples import AnalysisObservation, MetricObservation, Sample
from modelcanary.api.modeldeployment import (
    Autoscaling,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelcanary.api.rollbackdrill import RollbackDrillSpec, RollbackDrillStatus
from modelcanary.drills.ending import summary_of
from modelcanary.drills.plan import (
    DrillDecision,
    DrillObservations,
    analysis_due,
    plan_drill,
)
from modelcanary.drills.target import drill_target
from modelcanary.rollout.decision import EnsureRevision, ScaleRevision, SetWeights
from modelcanary.rollout.observations import RevisionObservation, RouterObservation
from tests.unit.rollout.world import make_spec, serving_first_revision

pytestmark = pytest.mark.unit


def two_promoted() -> tuple[ModelDeploymentSpec, ModelDeploymentStatus]:
    world = serving_first_revision()
    world.roll_out(make_spec("1.1.0"))
    world.run(
        lambda w: (
            w.status.phase == "Healthy" and w.status.stable_revision == w.spec.predictor.revision()
        )
    )
    return world.spec, world.status


@dataclass
class DrillWorld:
    md_spec: ModelDeploymentSpec
    md_status: ModelDeploymentStatus
    spec: RollbackDrillSpec
    now: datetime
    status: RollbackDrillStatus = field(default_factory=RollbackDrillStatus)
    replicas: dict[str, int] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    route: dict[str, int] = field(default_factory=dict)
    target_metric: float = 0.001
    stable_metric: float | None = 0.001
    router_readable: bool = True
    routes_asked: list[dict[str, int]] = field(default_factory=list)
    decisions: list[DrillDecision] = field(default_factory=list)

    def observe(self) -> DrillObservations:
        revisions = {
            rev: RevisionObservation(
                rev,
                True,
                n,
                n if rev not in self.broken else 0,
                n > 0 and rev not in self.broken,
                problem="ReplicaFailure: pods forbidden" if rev in self.broken else None,
            )
            for rev, n in self.replicas.items()
        }
        target = self.status.revisions.last_known_good if self.status.revisions else None
        stable = self.md_status.stable_revision
        analysis = None
        if self.status.step == "Judging" and target:
            analysis = AnalysisObservation(
                at=self.now,
                prometheus_online=True,
                metrics=tuple(
                    MetricObservation(
                        m.name, Sample.of(self.target_metric), Sample.of(self.stable_metric)
                    )
                    for m in self.md_spec.analysis.metrics  # type: ignore[union-attr]
                ),
            )
        del stable
        router = (
            RouterObservation(dict(self.route))
            if self.router_readable
            else RouterObservation(None, error="HTTPRoute unreadable")
        )
        return DrillObservations(revisions, router, analysis)

    def step(self, advance: timedelta = timedelta(seconds=2)) -> DrillDecision:
        decision = plan_drill(
            "drill-1",
            self.spec,
            status=self.status,
            md_spec=self.md_spec,
            md_status=self.md_status,
            observed=self.observe(),
            now=self.now,
        )
        for action in decision.actions:
            if isinstance(action, EnsureRevision):
                self.replicas[action.revision] = action.replicas or 1
            elif isinstance(action, ScaleRevision):
                self.replicas[action.revision] = action.replicas
            elif isinstance(action, SetWeights):
                assert sum(action.as_dict().values()) == 100
                self.route = action.as_dict()
                self.routes_asked.append(action.as_dict())
        self.status = decision.status
        self.decisions.append(decision)
        self.now += advance
        return decision

    def run(self, passes: int = 200) -> DrillDecision:
        for _ in range(passes):
            decision = self.step()
            if self.status.phase in ("Succeeded", "Failed", "Refused"):
                return decision
        raise AssertionError(f"drill still {self.status.phase} at {self.status.step}")


def drill_world(mode: str = "verify", **spec: object) -> DrillWorld:
    md_spec, md_status = two_promoted()
    stable = md_status.stable_revision
    assert stable is not None
    return DrillWorld(
        md_spec,
        md_status,
        RollbackDrillSpec.model_validate({"modelDeployment": "fraud", "mode": mode, **spec}),
        now=datetime(2026, 11, 23, 13, 0, tzinfo=md_status.history[0].created_at.tzinfo),
        replicas={stable: 2},
        route={stable: 100},
    )


def test_the_target_is_the_previous_known_good_revision() -> None:
    _, status = two_promoted()
    assert drill_target(status) == status.history[1].revision
    assert drill_target(status) != status.stable_revision


def test_verify_starts_the_target_at_zero_traffic_measures_and_tears_down() -> None:
    world = drill_world("verify")
    target = drill_target(world.md_status)
    assert target is not None
    final = world.run()
    assert world.status.phase == "Succeeded"
    assert world.status.time_to_ready_seconds is not None
    assert world.routes_asked == []  # verify never moves traffic
    assert world.replicas[target] == 0  # it was not running before, so it is stopped again
    assert final.summary is not None
    assert final.summary.succeeded
    assert final.summary.mode == "verify"


def test_verify_fails_with_a_reason_when_the_target_never_becomes_ready() -> None:
    world = drill_world("verify", timeout="30s")
    target = drill_target(world.md_status)
    assert target is not None
    world.broken.add(target)
    world.run()
    assert world.status.phase == "Failed"
    assert world.status.reason == (
        f"revision {target} did not become Ready within 30s: ReplicaFailure: pods forbidden"
    )
    assert world.replicas[target] == 0
    assert [e.reason for d in world.decisions for e in d.events][-1] == "DrillFailed"


def test_warm_sends_a_slice_judges_it_and_puts_the_weights_back_exactly() -> None:
    world = drill_world("warm", warmWeight=10)
    stable = world.md_status.stable_revision
    target = drill_target(world.md_status)
    world.run()
    assert world.status.phase == "Succeeded", world.status.reason
    assert world.routes_asked == [{stable: 90, target: 10}, {stable: 100}]
    assert world.route == {stable: 100}


def test_warm_with_failing_analysis_fails_after_restoring_the_weights() -> None:
    world = drill_world("warm")
    stable = world.md_status.stable_revision
    world.target_metric = 0.5  # over the error-rate bound
    world.run()
    assert world.status.phase == "Failed"
    assert "analysis failed" in world.status.reason
    assert world.route == {stable: 100}


def test_live_flips_all_traffic_and_back_and_reports_the_time_to_restore() -> None:
    world = drill_world("live")
    stable = world.md_status.stable_revision
    target = drill_target(world.md_status)
    world.run()
    assert world.status.phase == "Succeeded", world.status.reason
    assert world.routes_asked == [{target: 100}, {stable: 100}]
    assert world.status.time_to_restore_seconds is not None
    assert world.status.time_to_healthy_seconds is not None
    assert world.status.time_to_switch_back_seconds is not None
    summary = world.decisions[-1].summary
    assert summary is not None
    assert summary.revision == target
    assert summary.time_to_restore_seconds == world.status.time_to_restore_seconds


def test_live_judges_relative_bounds_against_stables_baseline_once_stable_is_idle() -> None:
    world = drill_world("live")
    while world.status.step != "Judging":
        world.step()
    world.target_metric = 0.001
    world.step()  # stable still has data in its rate window: this becomes the baseline
    assert world.status.results
    world.stable_metric = None  # stable serves nothing at 100% on the target
    world.run()
    assert world.status.phase == "Succeeded", world.status.reason


def test_judging_runs_once_per_analysis_interval() -> None:
    world = drill_world("warm")
    analysis = world.md_spec.analysis
    assert analysis is not None
    world.md_spec = world.md_spec.model_copy(
        update={"analysis": analysis.model_copy(update={"interval": "10s"})}
    )
    world.stable_metric = None  # no verdict: judging goes on
    while world.status.step != "Judging":
        world.step()
    assert analysis_due(world.spec, world.status, world.md_spec, world.now)
    decision = world.step(advance=timedelta(seconds=0))
    # The next look is at the next instant of the 10 s grid: at most 10 s away.
    assert 0 < decision.requeue_after <= 10.0
    assert not analysis_due(world.spec, world.status, world.md_spec, world.now)
    later = world.now + timedelta(seconds=decision.requeue_after)
    assert analysis_due(world.spec, world.status, world.md_spec, later)
    assert not analysis_due(world.spec, RollbackDrillStatus(), world.md_spec, later)


def test_no_verdict_until_the_timeout_fails_the_drill_and_restores_the_weights() -> None:
    world = drill_world("warm", timeout="40s")
    stable = world.md_status.stable_revision
    world.stable_metric = None  # relative bounds never get a stable value: NoData
    world.run()
    assert world.status.phase == "Failed"
    assert "gave no verdict within 40s" in world.status.reason
    assert world.route == {stable: 100}


def test_an_unreadable_router_refuses_a_new_drill() -> None:
    world = drill_world("warm")
    world.router_readable = False
    world.run()
    assert world.status.phase == "Refused"
    assert "HTTPRoute unreadable" in world.status.reason


def test_an_unreadable_router_holds_the_shift_toward_the_target() -> None:
    world = drill_world("live")
    while world.status.step != "WaitingReady":
        world.step()
    world.router_readable = False
    asked = len(world.routes_asked)
    for _ in range(5):
        decision = world.step()
        assert not any(isinstance(a, SetWeights) for a in decision.actions)
    assert world.status.step == "Shifting"
    assert len(world.routes_asked) == asked
    assert "HTTPRoute unreadable" in (world.status.verdict_note or "")


def test_an_unreadable_router_mid_drill_still_asks_for_the_weights_back() -> None:
    """The same rule as a rollout's rollback: going back is safe blind, going forward is not."""
    world = drill_world("live")
    stable = world.md_status.stable_revision
    while world.status.step != "Judging":
        world.step()
    world.target_metric = 0.5  # fail, so the next step is Restoring
    world.router_readable = False
    for _ in range(5):
        decision = world.step()
        assert all(
            a.as_dict() == {stable: 100} for a in decision.actions if isinstance(a, SetWeights)
        )
    assert world.routes_asked[-1] == {stable: 100}
    # Not confirmed while the router cannot be read: the drill waits in Restoring.
    assert world.status.step == "Restoring"
    world.router_readable = True
    world.run()
    assert world.route == {stable: 100}
    assert world.status.phase == "Failed"


def test_the_replicas_router_cannot_hold_a_ready_revision_at_zero_so_drills_refuse() -> None:
    world = drill_world("verify")
    traffic = {"port": 8080, "replicas": {}}
    world.md_spec = world.md_spec.model_copy(
        update={"traffic": type(world.md_spec.traffic).model_validate(traffic)}
    )
    world.run()
    assert world.status.phase == "Refused"
    assert "gatewayAPI" in world.status.reason


def test_a_summary_is_recorded_only_for_drills_that_ran() -> None:
    world = drill_world("verify")
    world.run()
    assert summary_of("drill-1", world.spec, world.status) == world.decisions[-1].summary
    refused = RollbackDrillStatus(phase="Refused", reason="a canary is in progress")
    assert summary_of("drill-2", world.spec, refused) is None
    assert summary_of("drill-3", world.spec, RollbackDrillStatus(phase="Running")) is None


@pytest.mark.parametrize("blocker", ["canary", "restoring", "other-drill", "no-stable"])
def test_a_drill_refuses_to_start_when_something_else_is_in_progress(blocker: str) -> None:
    world = drill_world("live")
    status = world.md_status.model_copy(deep=True)
    other = None
    if blocker == "canary":
        status.canary_revision = "abc"
    elif blocker == "restoring":
        status.restoring = "abc"
    elif blocker == "no-stable":
        status = ModelDeploymentStatus()
    else:
        other = "drill-0"
    decision = plan_drill(
        "drill-1",
        world.spec,
        status=RollbackDrillStatus(),
        md_spec=world.md_spec,
        md_status=status,
        observed=DrillObservations(other_drill_running=other),
        now=world.now,
    )
    assert decision.status.phase == "Refused"
    assert decision.actions == ()
    assert decision.status.reason


def test_an_interrupted_drill_resumes_from_its_recorded_step() -> None:
    world = drill_world("live")
    stable = world.md_status.stable_revision
    while world.status.step != "Judging":
        world.step()
    # The operator restarts: only the persisted status carries over.
    world.status = RollbackDrillStatus.model_validate(world.status.model_dump(by_alias=True))
    world.run()
    assert world.route == {stable: 100}


@settings(max_examples=100, deadline=None)
@given(
    mode=st.sampled_from(["verify", "warm", "live"]),
    broken=st.booleans(),
    bad=st.booleans(),
    stalls=st.lists(st.integers(1, 60), max_size=5),
)
def test_traffic_always_ends_where_it_was_found(
    mode: str, broken: bool, bad: bool, stalls: list[int]
) -> None:
    world = drill_world(mode, timeout="2m")
    before = dict(world.route)
    target = drill_target(world.md_status)
    assert target is not None
    if broken:
        world.broken.add(target)
    if bad:
        world.target_metric = 0.5
    for stall in stalls:
        world.step(advance=timedelta(seconds=stall))
    world.run()
    assert world.route == before
    assert world.status.phase in ("Succeeded", "Failed")
    if mode == "verify":
        assert world.routes_asked == []


def test_a_canary_that_slipped_in_before_the_drill_moved_traffic_wins() -> None:
    world = drill_world("warm")
    stable = world.md_status.stable_revision
    world.broken.add(drill_target(world.md_status) or "")  # held in WaitingReady
    world.step()
    assert world.status.step == "WaitingReady"
    world.md_status = world.md_status.model_copy(update={"canary_revision": "new"})
    world.run()
    assert world.status.phase == "Failed"
    assert "a canary of new started" in world.status.reason
    assert world.routes_asked == []
    assert world.route == {stable: 100}


def test_after_asking_for_new_weights_the_read_back_is_polled_quickly() -> None:
    world = drill_world("live")
    while True:
        decision = world.step(advance=timedelta(seconds=0.2))
        if any(isinstance(a, SetWeights) for a in decision.actions):
            break
    assert decision.requeue_after < 1.0
    world.run()
    assert world.status.time_to_restore_seconds == pytest.approx(0.2)


def test_a_running_autoscaled_target_keeps_the_count_its_hpa_gave_it() -> None:
    world = drill_world("verify")
    target = drill_target(world.md_status)
    assert target is not None
    entry = next(e for e in world.md_status.history if e.revision == target)
    entry.predictor = entry.predictor.model_copy(
        update={"autoscaling": Autoscaling(min_replicas=1, max_replicas=8)}
    )
    world.replicas[target] = 5  # still warm, sized by its HPA
    first = world.step()
    ensure = [a for a in first.actions if isinstance(a, EnsureRevision)]
    assert [(a.revision, a.replicas) for a in ensure] == [(target, None)]
