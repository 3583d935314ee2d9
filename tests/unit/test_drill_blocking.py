"""Which of two drills of one model goes first: the decision both of them must agree on."""

from __future__ import annotations

from typing import Any

import pytest

from modelcanary.drill_executor import blocking_drill

pytestmark = pytest.mark.unit


def drill(name: str, created: str, phase: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "creationTimestamp": created}}
    if phase is not None:
        body["status"] = {"phase": phase}
    return body


def test_two_pending_drills_agree_that_the_older_one_goes_first() -> None:
    older = drill("a-drill", "2026-11-23T10:00:00Z")
    newer = drill("b-drill", "2026-11-23T10:00:05Z")
    both = [older, newer]
    assert blocking_drill(older, both) is None
    assert blocking_drill(newer, both) == "a-drill"


def test_created_in_the_same_second_the_name_breaks_the_tie() -> None:
    first = drill("x-1", "2026-11-23T10:00:00Z")
    second = drill("x-2", "2026-11-23T10:00:00Z")
    assert blocking_drill(first, [first, second]) is None
    assert blocking_drill(second, [first, second]) == "x-1"


def test_a_running_drill_blocks_even_a_drill_created_before_it() -> None:
    running = drill("late", "2026-11-23T11:00:00Z", "Running")
    pending = drill("early", "2026-11-23T10:00:00Z")
    assert blocking_drill(pending, [pending, running]) == "late"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Refused"])
def test_finished_drills_block_nothing(phase: str) -> None:
    done = drill("old", "2026-11-23T09:00:00Z", phase)
    pending = drill("new", "2026-11-23T10:00:00Z")
    assert blocking_drill(pending, [done, pending]) is None
