"""How the CLI words a request (rollout/actions.py must parse it back) and waits for its answer."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest

from modelcanary.cli import actions
from modelcanary.rollout.actions import parse_action

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("args", "kind", "revision"),
    [
        ({"action": "promote", "full": False}, "promote", None),
        ({"action": "promote", "full": True}, "promote-full", None),
        ({"action": "rollback", "to": "abc123"}, "rollback", "abc123"),
        ({"action": "abort"}, "abort", None),
        ({"action": "pause"}, "pause", None),
        ({"action": "resume"}, "resume", None),
        ({"action": "retry"}, "retry", None),
    ],
)
def test_the_operator_reads_back_what_the_cli_asks(
    args: dict[str, Any], kind: str, revision: str | None
) -> None:
    value = actions.request_value(argparse.Namespace(**args))
    parsed = parse_action(value, "cli-1")
    assert parsed is not None
    assert (parsed.kind, parsed.revision, parsed.id) == (kind, revision, "cli-1")


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_returns_the_answer_to_this_request_only() -> None:
    clock = FakeClock()
    answers: Iterator[dict[str, Any]] = iter(
        [
            {"status": {}},
            {"status": {"lastAction": {"id": "someone-else", "accepted": True}}},
            {"status": {"lastAction": {"id": "mine", "accepted": False, "message": "no"}}},
        ]
    )
    answer = actions.wait_for_answer(
        lambda: next(answers), "mine", timeout=30, clock=clock, sleep=clock.sleep
    )
    assert answer == {"id": "mine", "accepted": False, "message": "no"}
    assert clock.now == pytest.approx(2 * actions.POLL_SECONDS)


def test_waiting_gives_up_at_the_deadline() -> None:
    clock = FakeClock()
    reads: list[float] = []

    def read() -> dict[str, Any]:
        reads.append(clock.now)
        return {"status": {"lastAction": {"id": "old"}}}

    assert actions.wait_for_answer(read, "mine", timeout=2, clock=clock, sleep=clock.sleep) is None
    assert clock.now == pytest.approx(2)
    # Polled every half second, and once more at the deadline.
    assert reads == pytest.approx([0, 0.5, 1.0, 1.5, 2.0])
