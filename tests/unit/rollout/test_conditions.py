"""The status's conditions: when each changes, and what an unchanged one keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelcanary.api.mdstatus import Condition
from modelcanary.api.modeldeployment import ModelDeploymentStatus
from modelcanary.rollout.conditions import derive, set_condition

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def only(status: ModelDeploymentStatus, kind: str) -> Condition:
    (condition,) = [c for c in status.conditions if c.type == kind]
    return condition


def put(
    status: ModelDeploymentStatus,
    value: bool | None,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None = 1,
) -> None:
    set_condition(
        status,
        "Ready",
        value=value,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )


def test_a_new_condition_starts_now() -> None:
    status = ModelDeploymentStatus()
    put(status, True, "Serving", "stable serves", now=T0)
    ready = only(status, "Ready")
    assert (ready.status, ready.reason, ready.message) == ("True", "Serving", "stable serves")
    assert ready.last_transition_time == T0
    assert ready.observed_generation == 1


def test_the_transition_time_moves_only_when_the_status_flips() -> None:
    status = ModelDeploymentStatus()
    put(status, True, "Serving", "stable serves", now=T0)
    put(status, True, "Serving", "stable 2 serves", now=LATER)
    assert only(status, "Ready").message == "stable 2 serves"
    assert only(status, "Ready").last_transition_time == T0
    put(status, False, "NotServing", "nothing serves", now=LATER)
    assert only(status, "Ready").status == "False"
    assert only(status, "Ready").last_transition_time == LATER


def test_an_unchanged_condition_is_kept_as_it_was_and_follows_the_generation() -> None:
    status = ModelDeploymentStatus()
    put(status, True, "Serving", "stable serves", now=T0)
    kept = only(status, "Ready")
    put(status, True, "Serving", "stable serves", now=LATER)
    assert only(status, "Ready") is kept, "no new model built for an unchanged condition"
    put(status, True, "Serving", "stable serves", now=LATER, generation=2)
    moved = only(status, "Ready")
    assert moved.observed_generation == 2
    assert moved.last_transition_time == T0
    assert kept.observed_generation == 1, "the condition it replaced is left as it was"


def test_derive_gives_the_same_conditions_in_the_same_order_at_rest() -> None:
    status = ModelDeploymentStatus(stable_revision="r1", message="")
    derive(status, T0, 1, serving=True)
    first = status.to_dict()["conditions"]
    assert [c["type"] for c in first] == [
        "Ready",
        "Progressing",
        "Degraded",
        "AnalysisHealthy",
        "InvalidSpec",
        "RollbackReady",
    ]
    derive(status, LATER, 1, serving=True)
    assert status.to_dict()["conditions"] == first
    derive(status, LATER, 1, serving=False)
    again = status.to_dict()["conditions"]
    assert [c["type"] for c in again] == [c["type"] for c in first]
    assert again[0]["status"] == "False"
    assert again[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]
    assert again[1:] == first[1:]
