"""Salvaging a status the models refuse: which parts are kept, and when acting is sound."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelcanary.rollout.status_reading import (
    decide_unsound,
    keep_memory,
    note,
    read_status,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
YEAR_ZERO = "0000-01-01T00:00:00Z"
MODEL = {"name": "m", "version": "1", "uri": "s3://m/1"}
ENTRY = {
    "revision": "aaaaaaaaaa",
    "predictor": {"model": MODEL, "template": {"spec": {"containers": [{"name": "s"}]}}},
    "outcome": "Promoted",
    "createdAt": "2026-11-23T10:00:00Z",
}
KNOWN_GOOD = {"revision": "aaaaaaaaaa", "model": MODEL, "promotedAt": "2026-11-23T10:01:00Z"}
GOOD: dict[str, Any] = {
    "phase": "Healthy",
    "stableRevision": "aaaaaaaaaa",
    "lastKnownGood": KNOWN_GOOD,
    "history": [ENTRY],
    "conditions": [{"type": "Ready", "status": "True"}],
}


def test_a_readable_status_is_read_as_is() -> None:
    reading = read_status(GOOD)
    assert reading.sound
    assert reading.problems == ()
    assert reading.status.stable_revision == "aaaaaaaaaa"


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (
            {"lastAction": {"id": "x", "action": "pause", "accepted": True, "at": YEAR_ZERO}},
            "lastAction",
        ),
        ({"analysis": {"evaluatedAt": YEAR_ZERO}}, "analysis"),
        ({"observedGeneration": "seven"}, "observedGeneration"),
    ],
)
def test_an_unreadable_report_is_reset_and_the_rest_kept(
    broken: dict[str, Any], field: str
) -> None:
    reading = read_status({**GOOD, **broken})
    assert reading.sound
    assert reading.problems, "the problem is named"
    assert reading.problems[0].path.startswith(f"status.{field}")
    assert field not in reading.status.to_dict()
    assert reading.status.history[0].revision == "aaaaaaaaaa"
    assert reading.status.last_known_good is not None


def test_readable_conditions_are_kept_one_by_one() -> None:
    conditions = [
        {"type": "Ready", "status": "True"},
        {"type": "Degraded", "status": "False", "lastTransitionTime": YEAR_ZERO},
    ]
    reading = read_status({**GOOD, "conditions": conditions})
    assert reading.sound
    assert [c.type for c in reading.status.conditions] == ["Ready"]
    assert [p.path for p in reading.problems] == ["status.conditions[1].lastTransitionTime"]


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({"history": [{**ENTRY, "createdAt": YEAR_ZERO}]}, "history"),
        ({"lastKnownGood": {**KNOWN_GOOD, "promotedAt": YEAR_ZERO}}, "lastKnownGood"),
        ({"stepStartedAt": YEAR_ZERO}, "stepStartedAt"),
        ({"phase": "Exploding"}, "phase"),
    ],
)
def test_unreadable_memory_is_not_sound(broken: dict[str, Any], field: str) -> None:
    stored = {**GOOD, **broken}
    reading = read_status(stored)
    assert not reading.sound
    assert reading.unreadable_memory == (field,)
    decision = decide_unsound(reading, NOW, generation=3)
    assert decision.actions == ()
    written = keep_memory(stored, decision.status)
    assert written[field] == stored[field], "the unreadable memory is written back untouched"
    invalid = next(c for c in decision.status.conditions if c.type == "InvalidStatus")
    assert invalid.status == "True"
    assert f"status.{field}" in invalid.message
    assert [e.reason for e in decision.events] == ["InvalidStatus"]


def test_the_condition_is_announced_once_and_cleared_after_a_repair() -> None:
    stored = {**GOOD, "stepStartedAt": YEAR_ZERO}
    first = decide_unsound(read_status(stored), NOW, generation=1)
    again = read_status({**keep_memory(stored, first.status)})
    assert decide_unsound(again, NOW, generation=1).events == ()

    repaired = {**keep_memory(stored, first.status), "stepStartedAt": "2026-11-27T11:00:00Z"}
    status, events = note(read_status(repaired), NOW, generation=1)
    invalid = next(c for c in status.conditions if c.type == "InvalidStatus")
    assert (invalid.status, invalid.reason, events) == ("False", "Readable", ())


def test_a_status_that_never_had_the_condition_does_not_gain_it() -> None:
    status, events = note(read_status(GOOD), NOW, generation=1)
    assert [c.type for c in status.conditions] == ["Ready"]
    assert events == ()


def test_a_status_with_nothing_to_note_is_not_copied() -> None:
    # Copying the whole status (history, evidence) was a tenth of a pass at rest.
    reading = read_status(GOOD)
    status, events = note(reading, NOW, generation=1)
    assert status is reading.status
    assert events == ()


def test_noting_a_repair_leaves_what_was_read_alone() -> None:
    stored = {**GOOD, "stepStartedAt": YEAR_ZERO}
    first = decide_unsound(read_status(stored), NOW, generation=1)
    repaired = {**keep_memory(stored, first.status), "stepStartedAt": "2026-11-27T11:00:00Z"}
    reading = read_status(repaired)
    before = reading.status.model_dump()
    status, _ = note(reading, NOW, generation=1)
    assert status is not reading.status
    assert reading.status.model_dump() == before
