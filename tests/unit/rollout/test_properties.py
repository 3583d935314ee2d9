"""Properties of the decision core over random rollouts.

Hypothesis drives a world through random passes: metrics that pass, fail,
have no data or error; Prometheus going away; a lagging router; manual
actions; new predictors mid-canary. After every pass the invariants must hold.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import Sample
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
)
from modelcanary.rollout.analysis import seconds_until_due
from modelcanary.rollout.decision import (
    DeleteAutoscaler,
    EnsureRevision,
    ScaleRevision,
    SetWeights,
)
from modelcanary.rollout.observations import ManualAction
from tests.unit.rollout.world import World, make_spec, spec_dict

pytestmark = pytest.mark.unit

REGIMES = ("healthy", "failing", "no-data", "error", "timeout", "offline")


def regime_metrics(regime: str, world: World) -> None:
    world.prometheus_online = regime != "offline"
    canary = world.status.canary_revision

    def source(metric: str, revision: str) -> Sample:
        if regime == "no-data":
            return Sample.of(None)
        if regime == "error":
            return Sample.failed("Prometheus rejected the query (bad_data)", Failure.ERROR)
        if regime == "timeout":
            return Sample.failed("Prometheus did not answer within 5s")
        if regime == "failing" and revision == canary:
            return Sample.of(1.0)
        return Sample.of(0.001)

    world.metrics = source


@st.composite
def specs(draw: st.DrawFn, version: str) -> ModelDeploymentSpec:
    weights = [*sorted(draw(st.lists(st.integers(1, 99), max_size=3))), 100]
    steps: list[dict[str, Any]] = []
    for weight in weights:
        steps.append({"setWeight": weight})
        if draw(st.booleans()):
            steps.append(
                {"pause": draw(st.sampled_from([{}, {"duration": "30s"}, {"duration": "2m"}]))}
            )
    raw = spec_dict(
        strategy={"steps": steps, "bake": {"duration": draw(st.sampled_from(["0s", "1m"]))}}
    )
    if draw(st.booleans()):
        raw["analysis"] = None
    else:
        raw["analysis"]["failureLimit"] = draw(st.integers(0, 2))
        raw["analysis"]["noData"] = draw(st.sampled_from(["hold", "fail", "pass"]))
        raw["analysis"]["outage"] = {
            "holdFor": "1m",
            "then": draw(st.sampled_from(["hold", "pause", "rollback"])),
        }
        raw["analysis"]["queryError"] = {
            "holdFor": draw(st.sampled_from(["0s", "30s"])),
            "then": draw(st.sampled_from(["hold", "pause", "rollback"])),
        }
        if raw["analysis"]["noData"] == "hold" and draw(st.booleans()):
            raw["analysis"]["noDataLimit"] = {
                "holdFor": "2m",
                "then": draw(st.sampled_from(["pause", "rollback"])),
            }
    if draw(st.booleans()):
        raw["traffic"] = {"replicas": {}}
        raw["predictor"]["replicas"] = draw(st.integers(1, 5))
    elif draw(st.booleans()):
        raw["predictor"]["autoscaling"] = {
            "minReplicas": draw(st.integers(1, 3)),
            "maxReplicas": draw(st.integers(3, 8)),
        }
    raw["revisionHistoryLimit"] = draw(st.integers(1, 4))
    raw["predictor"]["model"]["version"] = version
    return ModelDeploymentSpec.model_validate(raw)


passes = st.lists(
    st.tuples(
        st.sampled_from(REGIMES),
        st.integers(1, 90),  # seconds until the next pass
        st.integers(0, 2),  # router lag
        st.one_of(
            st.none(),
            st.sampled_from(
                ["promote", "promote-full", "abort", "pause", "resume", "retry", "rollback"]
            ),
        ),
        st.integers(0, 30),  # 0: a new predictor version arrives
        st.integers(0, 8),  # what the stable's HPA would choose from its load (0: no change)
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), events=passes)
def test_invariants_hold_on_every_pass(data: st.DataObject, events: list[tuple[Any, ...]]) -> None:
    version = 0
    spec = data.draw(specs(f"1.{version}.0"))
    world = World(spec)
    for index, (regime, seconds, lag, action, change, load) in enumerate(events):
        regime_metrics(regime, world)
        world.router_lag = lag
        if load and world.status.stable_revision is not None:
            world.load[world.status.stable_revision] = load
        if change == 0:
            version += 1
            world.roll_out(data.draw(specs(f"1.{version}.0")))
        manual = None
        if action is not None:
            target = world.status.history[-1].revision if world.status.history else None
            manual = ManualAction(action, f"id-{index}", target if action == "rollback" else None)
        before = world.status
        running = {rev for rev, count in world.replicas.items() if count > 0}
        autoscaled = set(world.autoscalers)
        decided_at = world.now
        decision = world.step(action=manual, advance=timedelta(seconds=seconds))
        status = decision.status
        # The operator sleeps what the pass asks and nothing else wakes it on
        # time: a pass never sleeps past the candidate's next look.
        due = seconds_until_due(world.spec, status, decided_at)
        if due is not None:
            assert decision.requeue_after <= max(due, 0.5), (due, decision.requeue_after)
        history = {entry.revision for entry in status.history}
        _assert_hpa_keeps_its_count(decision.actions, running, autoscaled)

        for action_taken in decision.actions:
            if isinstance(action_taken, SetWeights):
                weights = action_taken.as_dict()
                assert sum(weights.values()) == 100
                assert set(weights) <= history | {world.spec.predictor.revision()}
        assert 0 <= status.canary_weight <= 100
        if status.last_known_good is not None:
            assert status.last_known_good.revision in history, (
                "the last known-good left the history"
            )
        reasons = [event.reason for event in decision.events]
        if "RolledBack" in reasons:
            assert status.stable_revision in history
            assert status.canary_revision is None
        if "Promoted" in reasons and before.canary_revision is not None:
            _assert_promotion_had_evidence(world.spec, decision.status)


def _assert_hpa_keeps_its_count(
    actions: tuple[Any, ...], running: set[str], autoscaled: set[str]
) -> None:
    """A running autoscaled revision's count is its HPA's: the operator may only start
    a revision that is down, and retire one (its HPA deleted first)."""
    deleted: set[str] = set()
    for action in actions:
        if isinstance(action, DeleteAutoscaler):
            deleted.add(action.revision)
        elif isinstance(action, EnsureRevision) and action.autoscaler_min_replicas is not None:
            scaling = action.predictor.autoscaling
            assert scaling is not None
            assert 1 <= action.autoscaler_min_replicas <= scaling.max_replicas
            assert action.replicas is None or action.revision not in running, action
        elif isinstance(action, ScaleRevision) and action.revision in autoscaled:
            assert action.replicas == 0, action
            assert action.revision in deleted, f"{action} with its HPA still there"


def _assert_promotion_had_evidence(spec: ModelDeploymentSpec, status: Any) -> None:
    known = status.last_known_good
    assert known is not None
    by_hand = "by hand" in known.note
    if spec.analysis is None or by_hand:
        return
    verdicts = {result.verdict for result in known.evidence}
    assert verdicts, "promoted without any evaluation"
    assert "Fail" not in verdicts
    assert "Error" not in verdicts
    assert "Outage" not in verdicts
    if spec.analysis.no_data != "pass":
        assert verdicts == {"Pass"}


def test_the_first_revision_has_no_evidence_and_says_so() -> None:
    world = World(make_spec("1.0.0"))
    world.run(lambda w: w.status.phase == "Healthy")
    assert world.status.last_known_good is not None
    assert "nothing to compare" in world.status.last_known_good.note
