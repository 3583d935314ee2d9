"""The status write is one merge patch; fields the pass cleared must become null."""

from __future__ import annotations

import pytest

from modelcanary.passes import merge_patch

pytestmark = pytest.mark.unit


def test_removed_keys_become_null_and_unchanged_ones_are_left_out() -> None:
    before = {"phase": "Progressing", "canaryRevision": "abc", "canaryWeight": 10, "history": [1]}
    after = {"phase": "Healthy", "canaryWeight": 10, "history": [1, 2]}
    assert merge_patch(before, after) == {
        "phase": "Healthy",
        "canaryRevision": None,
        "history": [1, 2],
    }


def test_nested_objects_are_patched_key_by_key() -> None:
    before = {"analysis": {"outageSince": "t1", "failures": 0, "results": []}}
    after = {"analysis": {"failures": 1, "results": []}}
    assert merge_patch(before, after) == {"analysis": {"outageSince": None, "failures": 1}}


def test_no_change_is_an_empty_patch() -> None:
    status = {"phase": "Healthy", "analysis": {"failures": 0}}
    assert merge_patch(status, status) == {}
