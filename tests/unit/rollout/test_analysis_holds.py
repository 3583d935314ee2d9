"""Holds that last: a query error, no data and an outage, each with its own clock and policy.

Each test is a sequence of passes through the World simulator. A query error
(``Failure.ERROR``) is what Prometheus says about a query that waiting will
not fix; it must never promote, never count as a failure of the candidate, and
by default pause at once for a person. ``noDataLimit`` bounds ``noData: hold``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import Sample
from modelcanary.api.modeldeployment import ModelDeploymentSpec
from modelcanary.rollout.decision import SetWeights
from modelcanary.rollout.observations import ManualAction
from tests.unit.rollout.world import World, healthy_metrics, make_spec, serving_first_revision

pytestmark = pytest.mark.unit

SAID = (
    'Prometheus rejected the query (bad_data): 1:1: parse error: unknown function with name "rat"'
)


def broken_latency(metric: str, revision: str) -> Sample:
    if metric == "latency":
        return Sample.failed(SAID, Failure.ERROR)
    return healthy_metrics(metric, revision)


def no_data(metric: str, revision: str) -> Sample:
    return Sample.of(None)


def spec_with(**analysis: Any) -> ModelDeploymentSpec:
    raw = make_spec("1.1.0").model_dump(by_alias=True)
    raw["analysis"].update(analysis)
    return ModelDeploymentSpec.model_validate(raw)


def at_first_step(spec: ModelDeploymentSpec) -> World:
    """A canary of ``spec`` that has had one passing evaluation at 10%."""
    world = serving_first_revision()
    world.roll_out(spec)
    world.run(
        lambda w: (
            w.status.canary_weight == 10
            and (w.status.analysis.evaluations if w.status.analysis else 0) > 0
        )
    )
    return world


def outcome_is(outcome: str) -> Callable[[World], bool]:
    return lambda w: w.status.analysis is not None and w.status.analysis.outcome == outcome


def condition(world: World, kind: str) -> tuple[str, str, str]:
    found = next(c for c in world.status.conditions if c.type == kind)
    return found.status, found.reason, found.message


def weights_sent(world: World) -> list[dict[str, int]]:
    return [a.as_dict() for d in world.decisions for a in d.actions if isinstance(a, SetWeights)]


def test_a_query_error_pauses_at_once_quotes_prometheus_and_never_promotes() -> None:
    world = at_first_step(make_spec("1.1.0"))
    sent = len(weights_sent(world))
    world.metrics = broken_latency
    world.run(lambda w: w.status.paused, passes=10)
    assert world.status.phase == "Paused"
    assert world.status.analysis is not None
    assert world.status.analysis.outcome == "Error"
    assert world.status.analysis.error_since is not None
    assert world.status.analysis.outage_since is None
    assert (
        world.status.message
        == f"analysis on hold, query error: latency: candidate query failed: {SAID}"
    )
    assert condition(world, "AnalysisHealthy") == (
        "False",
        "Error",
        f"latency: candidate query failed: {SAID}",
    )
    for _ in range(200):  # well past every step, the bake and outage.holdFor
        world.step(advance=timedelta(seconds=10))
    assert world.status.canary_weight == 10
    assert world.status.phase == "Paused"
    assert world.status.analysis.failures == 0  # never the candidate's fault
    assert len(weights_sent(world)) == sent  # no traffic change at all
    assert world.events().count("Promoted") == 1  # the first revision only
    assert "RolledBack" not in world.events()
    assert world.events().count("AnalysisError") == 1  # when it began, not every look
    assert world.events().count("Paused") == 1


def test_resuming_a_still_broken_query_pauses_again_and_a_fixed_one_goes_on() -> None:
    world = at_first_step(make_spec("1.1.0"))
    world.metrics = broken_latency
    world.run(lambda w: w.status.paused, passes=10)
    world.step(ManualAction("resume", id="1"))
    # The resume is not undone in its own pass: the hold's clock starts again.
    assert not world.status.paused
    world.run(lambda w: w.status.paused, passes=10)
    assert world.status.canary_weight == 10
    assert world.events().count("Paused") == 2
    world.metrics = healthy_metrics  # the query was fixed
    world.step(ManualAction("resume", id="2"))
    world.run(lambda w: w.status.phase == "Healthy")
    assert world.status.stable_revision == make_spec("1.1.0").predictor.revision()


def test_a_query_error_during_the_bake_never_promotes() -> None:
    world = at_first_step(make_spec("1.1.0"))
    world.run(lambda w: w.status.phase == "Baking")
    world.metrics = broken_latency
    for _ in range(100):  # far beyond the 2m bake
        world.step(advance=timedelta(seconds=10))
    assert world.status.canary_revision is not None
    assert world.status.phase == "Paused"
    assert world.events().count("Promoted") == 1


def test_query_error_then_rollback_rolls_back_and_says_it_was_the_query() -> None:
    world = at_first_step(spec_with(queryError={"then": "rollback"}))
    world.metrics = broken_latency
    world.run(lambda w: w.status.phase == "RolledBack", passes=10)
    reason = f"query error: latency: candidate query failed: {SAID}"
    revision = make_spec("1.1.0").predictor.revision()
    assert world.status.message == f"{revision} rolled back: {reason}"
    entry = next(e for e in world.status.history if e.revision == revision)
    assert (entry.outcome.value, entry.reason) == ("RolledBack", reason)


def test_query_error_hold_for_tolerates_an_error_that_comes_and_goes() -> None:
    world = at_first_step(spec_with(queryError={"holdFor": "1m", "then": "pause"}))
    world.metrics = broken_latency
    started = world.now
    world.run(lambda w: w.status.paused, passes=40)
    since = world.status.analysis.error_since if world.status.analysis else None
    assert since is not None
    assert since >= started
    assert world.now - since >= timedelta(minutes=1)  # not before holdFor
    assert world.now - since < timedelta(minutes=1, seconds=20)  # nor long after


def test_query_error_then_hold_holds_without_pausing_and_stays_unhealthy() -> None:
    world = at_first_step(spec_with(queryError={"then": "hold"}))
    world.metrics = broken_latency
    for _ in range(100):
        world.step(advance=timedelta(seconds=10))
    assert not world.status.paused
    assert world.status.phase == "Progressing"
    assert world.status.canary_weight == 10
    assert condition(world, "AnalysisHealthy")[:2] == ("False", "Error")


def test_error_and_outage_keep_separate_clocks() -> None:
    """Four minutes of outage do not count towards the query error's two."""
    world = at_first_step(
        spec_with(
            outage={"holdFor": "5m", "then": "rollback"},
            queryError={"holdFor": "2m", "then": "rollback"},
        )
    )
    world.prometheus_online = False
    for _ in range(48):  # 4 minutes
        world.step()
    assert world.status.analysis is not None
    assert world.status.analysis.outcome == "Outage"
    world.prometheus_online = True
    world.metrics = broken_latency
    world.run(outcome_is("Error"), passes=4)
    assert world.status.analysis.outage_since is None
    error_began = world.status.analysis.error_since
    assert error_began is not None
    world.run(lambda w: w.status.phase == "RolledBack", passes=40)
    assert world.now - error_began >= timedelta(minutes=2)
    assert "query error for 2m" in world.status.message


def test_without_no_data_limit_no_data_holds_as_long_as_it_lasts() -> None:
    world = at_first_step(make_spec("1.1.0"))
    world.metrics = no_data
    for _ in range(360):  # an hour
        world.step(advance=timedelta(seconds=10))
    assert not world.status.paused
    assert world.status.phase == "Progressing"
    assert world.status.message.startswith("analysis on hold, no data: ")


@pytest.mark.parametrize(("then", "phase"), [("pause", "Paused"), ("rollback", "RolledBack")])
def test_no_data_limit_applies_then_after_hold_for(then: str, phase: str) -> None:
    world = at_first_step(spec_with(noDataLimit={"holdFor": "10m", "then": then}))
    world.metrics = no_data
    world.run(outcome_is("NoData"), passes=4)
    began = world.status.analysis.no_data_since if world.status.analysis else None
    assert began is not None
    world.run(lambda w: w.status.phase == phase, passes=200)
    assert world.now - began >= timedelta(minutes=10)
    assert world.now - began < timedelta(minutes=10, seconds=20)
    assert world.events().count("Promoted") == 1
    if then == "rollback":
        assert "no data for 10m: " in world.status.message


def test_resume_gives_no_data_another_hold_for() -> None:
    world = at_first_step(spec_with(noDataLimit={"holdFor": "2m", "then": "pause"}))
    world.metrics = no_data
    world.run(lambda w: w.status.paused, passes=60)
    resumed_at = world.now
    world.step(ManualAction("resume", id="1"))
    world.run(lambda w: w.status.paused, passes=60)
    assert world.now - resumed_at >= timedelta(minutes=2)
    world.metrics = healthy_metrics
    world.step(ManualAction("resume", id="2"))
    world.run(lambda w: w.status.phase == "Healthy")
