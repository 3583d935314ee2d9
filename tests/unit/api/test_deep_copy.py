"""``ApiModel.deep_copy`` is ``model_copy(deep=True)``: the same values, nothing shared
that can change, at less than half the cost (a pass copies its status once)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.decide_throughput import world_for
from modelcanary.api.judging import CountJudgement, EventEvidence, SliceJudgement
from modelcanary.api.modeldeployment import Condition, ModelDeploymentStatus

pytestmark = pytest.mark.unit


def heavy_status() -> ModelDeploymentStatus:
    """Mid-canary, a full history and an analysis with three metrics."""
    _, status, _ = world_for(7)
    return status


def test_the_copy_is_equal_and_says_the_same() -> None:
    status = heavy_status()
    copied = status.deep_copy()
    assert copied == status == status.model_copy(deep=True)
    assert copied.to_dict() == status.to_dict()
    assert copied.model_fields_set == status.model_fields_set
    assert type(copied) is ModelDeploymentStatus


def test_nothing_that_can_change_is_shared() -> None:
    status = heavy_status()
    before = status.to_dict()
    copied = status.deep_copy()
    assert copied.history
    assert copied.history is not status.history
    assert copied.history[0] is not status.history[0]
    copied.history[0].reason = "changed in the copy"
    copied.history.pop()
    copied.conditions.append(
        Condition(type="X", status="True", reason="R", last_transition_time=datetime.now(UTC))
    )
    copied.phase = type(copied.phase)("Failed")
    assert status.to_dict() == before


def test_a_count_judgements_evidence_is_copied_not_shared() -> None:
    state = CountJudgement(metric="errors", test="t", looks=3, slices=[SliceJudgement(slice="all")])
    copied = state.deep_copy()
    copied.looks = 4
    copied.slices[0].events.append(EventEvidence(event="errors", log_e=[0.5]))
    copied.slices.append(SliceJudgement(slice="eu"))
    assert state.looks == 3
    assert [s.slice for s in state.slices] == ["all"]
    assert state.slices[0].events == []
