"""Count metrics in the rollout: when the judge looks, and what its verdicts do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from modelcanary.api.judging import Verdict
from modelcanary.rollout.analysis import look_lateness, next_look_at, seconds_until_due
from tests.unit.rollout.world import Counters, World, make_spec, serving_first_revision

pytestmark = pytest.mark.unit
Q = 'sum(x{revision="{{revision}}"})'


def counted(version: str, **analysis: Any) -> Any:
    spec = make_spec(version)
    raw = spec.to_dict()
    raw["analysis"].update(
        {
            "interval": "5s",
            "metrics": [{"name": "errors", "errors": {"failed": Q, "total": Q}}],
            **analysis,
        }
    )
    return type(spec).model_validate(raw)


def world_with(bad: set[str], **analysis: Any) -> tuple[World, Any]:
    first = counted("1.0.0", **analysis)
    world = serving_first_revision(first)
    stable = world.status.stable_revision
    assert stable is not None
    world.counters = Counters(lambda revision: 0.2 if revision in bad else 0.001)
    world.counters.serve({stable: 100}, 600)  # stable's past
    return world, counted("2.0.0", **analysis)


def test_a_failing_count_metric_rolls_back_at_once_whatever_failure_limit_says() -> None:
    candidate_spec = counted("2.0.0")
    world, spec = world_with({candidate_spec.predictor.revision()}, failureLimit=5)
    world.roll_out(spec)
    world.run(lambda w: w.status.phase == "RolledBack", advance=timedelta(seconds=5))
    entry = world.status.history[0]
    assert entry.outcome == "RolledBack"
    assert entry.reason.startswith("errors: candidate 20.0% failed vs stable ")
    assert world.status.analysis is not None
    assert world.status.analysis.failures == 1  # the first failure was enough
    failed = next(r for r in entry.evidence if r.metric == "errors")
    assert failed.verdict is Verdict.FAIL
    assert failed.effect_low is not None
    assert failed.effect_low > 1


def test_a_healthy_candidate_is_promoted_with_its_effect_as_evidence() -> None:
    world, spec = world_with(set())
    world.roll_out(spec)
    world.run(
        lambda w: (
            w.status.phase == "Healthy" and w.status.stable_revision == spec.predictor.revision()
        ),
        advance=timedelta(seconds=5),
    )
    assert world.status.last_known_good is not None
    evidence = {r.metric: r for r in world.status.last_known_good.evidence}
    assert evidence["errors"].verdict is Verdict.PASS
    assert evidence["errors"].e_value is not None
    assert evidence["errors"].e_value < 100


def test_looks_before_any_traffic_only_move_the_judges_starting_counters() -> None:
    world, spec = world_with(set())
    world.roll_out(spec)
    world.step(advance=timedelta(seconds=1))  # the canary starts at 0%
    world.step(advance=timedelta(seconds=1))
    analysis = world.status.analysis
    assert analysis is not None
    assert world.status.canary_weight == 0
    assert analysis.last_run_at is not None
    assert analysis.weight == 0
    assert analysis.evaluations == 0
    assert analysis.outcome is None
    assert [j.metric for j in analysis.judgements] == ["errors"]


def test_a_new_weight_brings_the_next_look_forward() -> None:
    world, spec = world_with(set())
    world.roll_out(spec)
    world.run(lambda w: w.status.canary_weight == 10, advance=timedelta(seconds=1))
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.weight == 0
    world.step(advance=timedelta(seconds=1))  # interval 5s: only the new weight makes it due
    assert world.status.analysis is not None
    assert world.status.analysis.weight == 10


def looked_at_ten_percent() -> World:
    """A healthy candidate whose first look at 10% has been taken."""
    world, spec = world_with(set())
    world.roll_out(spec)
    world.run(
        lambda w: w.status.analysis is not None and w.status.analysis.weight == 10,
        advance=timedelta(seconds=1),
    )
    return world


def last_look_on_the_grid(world: World) -> datetime:
    """Move the last look forward onto an instant of the 5 s look grid, and return it:
    from there the next look is a whole period away (off the grid it is nearer)."""
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.last_run_at is not None
    on_grid = next_look_at(analysis.last_run_at, "5s")
    analysis.last_run_at = on_grid
    return on_grid


@pytest.mark.parametrize(
    ("e_value", "next_look"), [(None, 5.0), (0.4, 5.0), (1.0, 5.0), (3.0, 1.25)]
)
def test_evidence_leaning_against_the_candidate_brings_looks_to_every_quarter_interval(
    e_value: float | None, next_look: float
) -> None:
    world = looked_at_ten_percent()
    last = last_look_on_the_grid(world)
    analysis = world.status.analysis
    assert analysis is not None
    for result in analysis.results:
        result.e_value = e_value
    assert seconds_until_due(world.spec, world.status, last) == next_look


def test_a_hurried_look_is_scheduled_to_the_instant() -> None:
    """The daemon sleeps what the decision says: a quarter interval, not a rounded-up floor."""
    world = looked_at_ten_percent()
    analysis = world.status.analysis
    assert analysis is not None
    for result in analysis.results:
        result.e_value = 3.0
    last = last_look_on_the_grid(world)
    world.now = last + timedelta(seconds=1)
    decision = world.step(advance=timedelta(seconds=1))  # 1 s after the look: not due yet
    assert world.status.analysis is not None
    assert world.status.analysis.last_run_at == last
    assert decision.requeue_after == pytest.approx(0.25)


def test_a_failure_seen_before_the_weight_is_read_back_still_rolls_back() -> None:
    """The route sends the candidate requests as soon as it is written; the look that
    sees them may come before the pass that reads the new weight back."""
    candidate_spec = counted("2.0.0")
    world, spec = world_with({candidate_spec.predictor.revision()})
    world.roll_out(spec)
    weights_before: list[int] = []
    for _ in range(20):
        weights_before.append(world.status.canary_weight)
        decision = world.step(advance=timedelta(seconds=5))
        if any(event.reason == "RolledBack" for event in decision.events):
            break
    assert world.status.phase == "RolledBack"
    assert weights_before[-1] == 0  # the look that failed it was taken at weight 0
    assert world.status.history[0].reason.startswith("errors: candidate ")


def test_quick_steps_wait_below_100_until_the_count_metrics_have_compared() -> None:
    """[50, 100] with no pause could reach 100% before any comparison; at 100% stable
    serves nothing, so the count metrics would have nothing to judge, ever."""

    def quick(version: str) -> Any:
        raw = counted(version).to_dict()
        raw["strategy"]["steps"] = [{"setWeight": 50}, {"setWeight": 100}]
        raw["strategy"]["bake"] = {"duration": "0s"}
        return type(counted(version)).model_validate(raw)

    world, _ = world_with(set())
    spec = quick("2.0.0")
    world.roll_out(spec)
    weights_before_a_pass: list[int] = []

    def promoted(w: World) -> bool:
        analysis = w.status.analysis
        if w.status.canary_revision and (analysis is None or analysis.outcome != "Pass"):
            weights_before_a_pass.append(w.status.canary_weight)
        return w.status.phase == "Healthy" and w.status.stable_revision == spec.predictor.revision()

    world.run(promoted, advance=timedelta(seconds=1))
    assert 100 not in weights_before_a_pass
    assert 50 in weights_before_a_pass
    assert any("until the count metrics have compared" in d.status.message for d in world.decisions)
    evidence = {r.metric: r for r in world.status.last_known_good.evidence}  # type: ignore[union-attr]
    assert evidence["errors"].verdict is Verdict.PASS


def test_look_lateness_is_measured_against_the_grid_instant_the_look_was_due_at() -> None:
    """The analysis tick lag (modelcanary_analysis_tick_lag_seconds): how late a due look runs."""
    world = looked_at_ten_percent()
    last = last_look_on_the_grid(world)
    analysis = world.status.analysis
    assert analysis is not None
    spec, status = world.spec, world.status
    # Interval 5s, last look on the grid: due at last + 5 s.
    assert look_lateness(spec, status, last + timedelta(seconds=2)) == pytest.approx(-3.0)
    assert look_lateness(spec, status, last + timedelta(seconds=5)) == pytest.approx(0.0)
    assert look_lateness(spec, status, last + timedelta(seconds=5.75)) == pytest.approx(0.75)
    # Hurried (evidence above 1): due a quarter interval after the last look.
    for result in analysis.results:
        result.e_value = 3.0
    assert look_lateness(spec, status, last + timedelta(seconds=1.5)) == pytest.approx(0.25)
    # A look taken off the grid is due at the next grid instant, not a period later.
    for result in analysis.results:
        result.e_value = None
    analysis.last_run_at = last + timedelta(seconds=3)
    assert look_lateness(spec, status, last + timedelta(seconds=5)) == pytest.approx(0.0)


def test_looks_due_at_once_have_no_lateness() -> None:
    """The first look and one at a new weight are due when something happened, not on a clock."""
    world = looked_at_ten_percent()
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.last_run_at is not None
    later = analysis.last_run_at + timedelta(seconds=60)
    analysis.weight = 0  # the weight changed since the last look
    assert look_lateness(world.spec, world.status, later) is None
    world.status.analysis = None
    assert look_lateness(world.spec, world.status, later) is None
