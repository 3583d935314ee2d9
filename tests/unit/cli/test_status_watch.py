"""``status --watch`` off a terminal: one block per change, nothing while nothing changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelcanary.cli import status

pytestmark = pytest.mark.unit


def snapshot(version: str, message: str, events: int = 0) -> tuple[dict[str, Any], list[Any]]:
    md = {
        "metadata": {"name": "fraud", "namespace": "risk", "resourceVersion": version},
        "status": {"phase": "Healthy", "message": message},
    }
    happened = [
        {"metadata": {"resourceVersion": f"e{i}"}, "type": "Normal", "reason": f"R{i}"}
        for i in range(events)
    ]
    return md, happened


def test_a_block_is_printed_only_when_the_object_or_its_events_change() -> None:
    printed: list[str] = []
    snapshots = [
        snapshot("1", "first"),
        snapshot("1", "first"),  # polled again, nothing new
        snapshot("2", "second"),
        snapshot("2", "second", events=1),  # only an Event is new
        snapshot("2", "second", events=1),
    ]
    status.watch(iter(snapshots), None, out=printed.append, terminal=False)
    assert len(printed) == 3
    assert "first" in printed[0]
    assert "second" in printed[1]
    assert "R0" in printed[2]
    assert all("\x1b[" not in block for block in printed)


def test_with_o_json_each_change_is_one_json_document() -> None:
    printed: list[str] = []
    status.watch(
        iter([snapshot("1", "a"), snapshot("1", "a"), snapshot("2", "b")]),
        "json",
        out=printed.append,
    )
    assert [json.loads(block)["status"]["message"] for block in printed] == ["a", "b"]
