"""The rollback drill's pass over the shared skeleton, driven over a fake API.

The same glue as the ModelDeployment's pass (test_pass_skeleton.py): the
first failed action stops the rest, the status is written once and not when
unchanged, and a status that cannot be read is named, never a crash.
"""

from __future__ import annotations

import pytest

from tests.unit.fake_kube import Failure
from tests.unit.pass_world import (
    DRILL_PATH,
    MD_PATH,
    A,
    B,
    drill_cluster,
    drill_pass,
)

pytestmark = pytest.mark.unit


# -- the drill pass over the same skeleton ----------------------------------------------------


def test_a_drill_pass_stops_at_its_first_failed_action_and_still_writes_its_status() -> None:
    cluster = drill_cluster()
    cluster.kube.failures.append(Failure("POST", "/deployments", 500, "etcdserver: timeout"))
    result = drill_pass(cluster)
    assert result.failed is not None
    assert result.applied == []
    assert result.status_written
    drill = cluster.kube.get(DRILL_PATH)["status"]
    assert (drill["phase"], drill["step"]) == ("Running", "WaitingReady")
    assert cluster.router.asked == []


def test_a_drill_pass_with_nothing_new_writes_nothing() -> None:
    cluster = drill_cluster()
    drill_pass(cluster)  # starts: the target's Deployment is made, not yet Ready
    status_writes = len(cluster.kube.writes(f"{DRILL_PATH}/status"))
    again = drill_pass(cluster)
    assert not again.status_written
    assert len(cluster.kube.writes(f"{DRILL_PATH}/status")) == status_writes


def test_a_drill_never_shifts_toward_its_target_through_an_unreadable_router() -> None:
    cluster = drill_cluster()
    drill_pass(cluster)
    cluster.deployment(A)  # the target is Ready
    cluster.router.unreadable = "connection refused"
    for _ in range(3):
        drill_pass(cluster)
    assert cluster.router.asked == []
    assert "waiting for the router" in cluster.kube.get(DRILL_PATH)["status"]["verdictNote"]


def test_a_drill_of_a_model_whose_status_cannot_be_read_is_refused_naming_the_field() -> None:
    cluster = drill_cluster()
    md = cluster.kube.get(MD_PATH)
    md["status"]["history"][1]["createdAt"] = "0000-01-01T00:00:00Z"
    cluster.kube.put(MD_PATH, md)
    result = drill_pass(cluster)
    drill = cluster.kube.get(DRILL_PATH)["status"]
    assert drill["phase"] == "Refused"
    assert "status.history[1].createdAt" in drill["reason"]
    assert result.decision.actions == ()
    assert cluster.router.asked == []


def test_a_drill_whose_own_status_cannot_be_read_ends_failed_and_keeps_the_rest() -> None:
    cluster = drill_cluster()
    drill = cluster.kube.get(DRILL_PATH)
    drill["status"] = {
        "phase": "Running",
        "step": "Judging",
        "startedAt": "0000-01-01T00:00:00Z",
        "weightsBefore": {B: 100},
    }
    cluster.kube.put(DRILL_PATH, drill)
    result = drill_pass(cluster)
    status = cluster.kube.get(DRILL_PATH)["status"]
    assert status["phase"] == "Failed"
    assert "status.startedAt" in status["reason"]
    assert (status["step"], status["startedAt"]) == ("Judging", "0000-01-01T00:00:00Z")
    assert status["weightsBefore"] == {B: 100}
    assert result.finished
    assert result.decision.actions == ()
    assert cluster.router.asked == []
