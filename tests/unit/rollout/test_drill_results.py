"""Finished drills become lastDrill, drillHistory and RollbackReady; old ones are pruned."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from modelcanary.api.modeldeployment import (
    MAX_DRILL_HISTORY,
    DrillSummary,
)
from modelcanary.rollout.decide import decide
from modelcanary.rollout.decision import Decision, DeleteDrill
from modelcanary.rollout.observations import FinishedDrill
from tests.unit.rollout.world import T0, World, make_spec, serving_first_revision

pytestmark = pytest.mark.unit


def summary(index: int, *, succeeded: bool = True, reason: str = "") -> DrillSummary:
    started = T0 + timedelta(hours=index)
    return DrillSummary(
        name=f"drill-{index:03d}",
        mode="verify",
        succeeded=succeeded,
        revision="abc",
        started_at=started,
        finished_at=started + timedelta(seconds=20),
        time_to_ready_seconds=3.0,
        reason=reason,
    )


def finished(*summaries: DrillSummary) -> tuple[FinishedDrill, ...]:
    return tuple(FinishedDrill(s.name, s) for s in summaries)


def pass_with(world: World, drills: tuple[FinishedDrill, ...]) -> Decision:
    observed = replace(world.observe(), finished_drills=drills)
    decision = decide(world.spec, world.status, observed, world.now)
    world.status = decision.status
    return decision


def condition(world: World, kind: str) -> tuple[str, str, str]:
    found = next(c for c in world.status.conditions if c.type == kind)
    return found.status, found.reason, found.message


def test_a_finished_drill_becomes_last_drill_and_rollback_ready() -> None:
    world = serving_first_revision()
    assert condition(world, "RollbackReady")[0] == "Unknown"
    decision = pass_with(world, finished(summary(1)))
    assert world.status.last_drill == summary(1)
    assert world.status.drill_history == [summary(1)]
    assert condition(world, "RollbackReady")[:2] == ("True", "DrillSucceeded")
    assert [e.reason for e in decision.events] == ["DrillSucceeded"]
    again = pass_with(world, finished(summary(1)))
    assert again.events == ()  # recorded once, announced once


def test_a_failed_drill_sets_rollback_ready_false_with_its_reason() -> None:
    world = serving_first_revision()
    pass_with(world, finished(summary(1), summary(2, succeeded=False, reason="not Ready")))
    status, reason, message = condition(world, "RollbackReady")
    assert (status, reason) == ("False", "DrillFailed")
    assert "not Ready" in message
    assert [d.name for d in world.status.drill_history] == ["drill-002", "drill-001"]


def test_a_refused_drill_is_not_a_rehearsal_and_does_not_change_readiness() -> None:
    world = serving_first_revision()
    pass_with(world, finished(summary(1)))
    pass_with(world, (FinishedDrill("drill-refused", None, T0 + timedelta(hours=9)),))
    assert world.status.last_drill == summary(1)
    assert condition(world, "RollbackReady")[0] == "True"


def test_objects_beyond_the_limit_are_pruned_only_once_their_result_is_stored() -> None:
    world = serving_first_revision(make_spec(drill={"schedule": "0 3 * * *", "historyLimit": 2}))
    drills = finished(*(summary(i) for i in range(1, 5)))
    first = pass_with(world, drills)
    # Nothing was in the stored status yet: deleting now could lose a result.
    assert not [a for a in first.actions if isinstance(a, DeleteDrill)]
    second = pass_with(world, drills)
    pruned = [a.name for a in second.actions if isinstance(a, DeleteDrill)]
    assert pruned == ["drill-002", "drill-001"]
    assert {d.name for d in world.status.drill_history} == {f"drill-00{i}" for i in range(1, 5)}


def test_refused_drills_beyond_the_limit_are_pruned_at_once() -> None:
    world = serving_first_revision()
    refused = tuple(
        FinishedDrill(f"refused-{i}", None, T0 + timedelta(minutes=i)) for i in range(7)
    )
    decision = pass_with(world, refused)
    assert sorted(a.name for a in decision.actions if isinstance(a, DeleteDrill)) == [
        "refused-0",
        "refused-1",
    ]


def test_the_history_keeps_the_newest_drills_and_old_objects_can_still_go() -> None:
    world = serving_first_revision(make_spec(drill={"schedule": "0 3 * * *", "historyLimit": 50}))
    many = [summary(i) for i in range(1, MAX_DRILL_HISTORY + 41)]
    pass_with(world, finished(*many))
    assert len(world.status.drill_history) == MAX_DRILL_HISTORY
    assert world.status.drill_history[0] == many[-1]
    decision = pass_with(world, finished(*many))
    assert decision.status == world.status  # no churn once recorded
    pruned = {a.name for a in decision.actions if isinstance(a, DeleteDrill)}
    assert len(pruned) == 10
    assert pruned == {s.name for s in many[:-50]}
