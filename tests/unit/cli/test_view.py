"""The status view (cli/view.py) from plain dicts, as the API server returns them."""

from __future__ import annotations

import copy
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console

from modelcanary.cli import view

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def canary() -> dict[str, Any]:
    """fraud 1.5.0 paused at 20% against stable 1.4.0, failing one check."""
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "risk"},
        "spec": {
            "predictor": {"model": {"name": "fraud", "version": "1.5.0"}},
            "strategy": {
                "steps": [
                    {"setWeight": 20},
                    {"pause": {"duration": "1m"}},
                    {"pause": {}},
                    {"setWeight": 100},
                ],
                "bake": {"duration": "5m"},
            },
            "analysis": {
                "metrics": [
                    {"name": "error-rate", "query": "q", "max": 0.05, "maxRelativeToStable": 1.5},
                    {"name": "score", "query": "q", "min": 0.2, "minRelativeToStable": 0.9},
                ]
            },
        },
        "status": {
            "phase": "Paused",
            "message": "paused at 20%",
            "stableRevision": "aaaa111111",
            "canaryRevision": "bbbb222222",
            "canaryWeight": 20,
            "currentStep": 1,
            "paused": True,
            "history": [
                {
                    "revision": "bbbb222222",
                    "predictor": {"model": {"version": "1.5.0"}},
                    "outcome": "Progressing",
                },
                {
                    "revision": "aaaa111111",
                    "predictor": {"model": {"version": "1.4.0"}},
                    "outcome": "Promoted",
                },
            ],
            "lastKnownGood": {
                "revision": "aaaa111111",
                "model": {"name": "fraud", "version": "1.4.0"},
                "promotedAt": "2026-11-22T12:00:00Z",
                "evidence": [
                    {"metric": "error-rate", "candidate": 0.01, "stable": 0.012, "verdict": "Pass"}
                ],
            },
            "analysis": {
                "outcome": "Fail",
                "reason": "error-rate 0.09 above 0.05",
                "evaluations": 4,
                "failures": 1,
                "lastRunAt": "2026-11-23T11:59:50Z",
                "results": [
                    {
                        "metric": "error-rate",
                        "candidate": 0.09,
                        "stable": 0.01,
                        "verdict": "Fail",
                        "message": "0.09 > 0.05",
                    },
                    {"metric": "score", "verdict": "NoData", "message": "no samples"},
                ],
            },
            "lastDrill": {
                "name": "fraud-drill-x",
                "mode": "live",
                "succeeded": True,
                "timeToRestoreSeconds": 3.21,
                "startedAt": "2026-11-23T09:00:00Z",
                "finishedAt": "2026-11-23T10:00:00Z",
            },
            "lastAction": {
                "id": "cli-1",
                "action": "pause",
                "accepted": True,
                "message": "paused; analysis goes on and can still roll back",
                "at": "2026-11-23T11:59:30Z",
            },
        },
    }


def event(reason: str, at: str, kind: str = "Normal", count: int = 1) -> dict[str, Any]:
    return {
        "type": kind,
        "reason": reason,
        "message": f"{reason} happened",
        "lastTimestamp": at,
        "count": count,
    }


def row(lines: list[str], key: str) -> str:
    """The value of a summary row ("Phase   Paused" -> "Paused")."""
    for line in lines:
        if line.startswith(key + "  "):
            return line[len(key) :].strip()
    raise AssertionError(f"no {key!r} row in:\n" + "\n".join(lines))


def table_row(lines: list[str], first_cell: str) -> list[str]:
    for line in lines:
        cells = line.split()
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting {first_cell!r} in:\n" + "\n".join(lines))


def test_a_paused_canary_shows_both_revisions_weights_and_the_step() -> None:
    lines = view.status_lines(canary(), now=NOW)
    assert row(lines, "Name") == "fraud"
    assert row(lines, "Namespace") == "risk"
    assert row(lines, "Phase") == "Paused"
    assert row(lines, "Message") == "paused at 20%"
    assert row(lines, "Stable") == "aaaa111111 (model 1.4.0)  weight 80%"
    assert row(lines, "Canary") == "bbbb222222 (model 1.5.0)  weight 20%"
    assert row(lines, "Step") == "2/4 pause 1m  (paused)"


@pytest.mark.parametrize(
    ("current_step", "extra", "shown"),
    [
        (0, {}, "1/4 setWeight 20%"),
        (2, {}, "3/4 pause until resumed"),
        (4, {}, "4/4 done, baking at 100% for 5m"),
        (1, {"promoteFull": True}, "1/4 promote --full: going to 100%"),
    ],
)
def test_the_step_says_what_it_is(current_step: int, extra: dict[str, Any], shown: str) -> None:
    md = canary()
    md["status"].update(currentStep=current_step, paused=False, **extra)
    assert row(view.status_lines(md, now=NOW), "Step") == shown


def test_each_metric_shows_candidate_stable_bounds_and_verdict() -> None:
    lines = view.status_lines(canary(), now=NOW)
    assert table_row(lines, "error-rate") == [
        "error-rate",
        "0.09",
        "0.01",
        "<=",
        "0.05,",
        "<=",
        "1.5x",
        "stable",
        "-",
        "Fail",
        "0.09",
        ">",
        "0.05",
    ]
    score = " ".join(table_row(lines, "score"))
    assert score == "score - - >= 0.2, >= 0.9x stable - NoData no samples"
    assert row(lines, "Analysis") == (
        "Fail - error-rate 0.09 above 0.05  (4 evaluations, 1 failed, last 10s ago)"
    )


def test_a_count_metric_shows_what_it_tests_its_effect_and_interval() -> None:
    md = canary()
    md["spec"]["analysis"]["metrics"].append(
        {
            "name": "latency",
            "latency": {"buckets": "q", "tolerance": 0.1},
            "slice": {"label": "segment", "max": 3},
        }
    )
    md["status"]["analysis"]["results"].append(
        {
            "metric": "latency",
            "candidate": 0.38,
            "stable": 0.021,
            "verdict": "Fail",
            "effect": 28.4,
            "effectLow": 4.48,
            "message": "slice eu: slower than 0.005: ...",
        }
    )
    shown = " ".join(table_row(view.status_lines(md, now=NOW), "latency"))
    assert shown.startswith(
        "latency 0.38 0.021 slower vs stable (+10% odds), per segment 28.4 [4.48, inf] Fail"
    )


def test_last_known_good_drill_and_action_are_shown_with_their_evidence_and_ages() -> None:
    lines = view.status_lines(canary(), now=NOW)
    assert row(lines, "Last known-good") == "aaaa111111 (model 1.4.0), promoted 1d ago"
    assert row(lines, "  evidence") == "error-rate=0.01 vs stable 0.012 Pass"
    assert row(lines, "Last drill") == "live succeeded, restored in 3.21s, 2h ago"
    assert row(lines, "Last action") == (
        "pause: accepted, 30s ago - paused; analysis goes on and can still roll back"
    )


def test_a_refused_action_and_a_failed_drill_say_so() -> None:
    md = canary()
    md["status"]["lastAction"].update(
        action="rollback", revision="cccc", accepted=False, message="not in the history"
    )
    md["status"]["lastDrill"] = {
        "mode": "verify",
        "succeeded": False,
        "timeToReadySeconds": None,
        "finishedAt": "2026-11-23T11:00:00Z",
        "reason": "pods never Ready",
    }
    lines = view.status_lines(md, now=NOW)
    assert row(lines, "Last action").startswith("rollback cccc: refused, 30s ago")
    assert row(lines, "Last drill") == "verify failed, 1h ago - pods never Ready"


def test_a_healthy_model_has_no_canary_row_and_all_weight_on_stable() -> None:
    md = canary()
    md["status"] = {
        "phase": "Healthy",
        "stableRevision": "aaaa111111",
        "history": md["status"]["history"][1:],
    }
    lines = view.status_lines(md, now=NOW)
    assert row(lines, "Stable") == "aaaa111111 (model 1.4.0)  weight 100%"
    assert not [line for line in lines if line.startswith(("Canary", "Step", "Metrics"))]


def test_the_previous_revision_kept_warm_shows_when_it_goes() -> None:
    md = canary()
    md["status"] = {
        "phase": "Healthy",
        "stableRevision": "bbbb222222",
        "previousRevision": "aaaa111111",
        "scaleDownAt": "2026-11-23T12:00:25Z",
        "history": md["status"]["history"],
    }
    lines = view.status_lines(md, now=NOW)
    assert row(lines, "Warm") == "aaaa111111 (model 1.4.0)  scaled to zero in 25s"


def test_the_candidates_version_comes_from_the_spec_before_history_records_it() -> None:
    md = canary()
    md["status"]["history"] = []
    assert row(view.status_lines(md, now=NOW), "Canary") == "bbbb222222 (model 1.5.0)  weight 20%"


def test_the_most_recent_events_are_shown_oldest_first_with_ages() -> None:
    events = [event(f"Step{i}", f"2026-11-23T11:{i:02d}:00Z") for i in range(12)]
    events.append(event("ActionRejected", "2026-11-23T11:59:00Z", kind="Warning", count=3))
    lines = view.status_lines(canary(), events[::-1], now=NOW)
    shown = [line.split()[1] for line in lines if line.split()[:1] in (["Normal"], ["Warning"])]
    assert shown == [f"Step{i}" for i in range(5, 12)] + ["ActionRejected"]
    assert table_row(lines, "Warning")[:5] == [
        "Warning",
        "ActionRejected",
        "1m",
        "(x3)",
        "ActionRejected",
    ]


def test_plain_lines_carry_no_ansi_and_the_rich_view_does_on_a_terminal() -> None:
    events = [event("ActionRejected", "2026-11-23T11:59:00Z", kind="Warning")]
    assert not [line for line in view.status_lines(canary(), events, now=NOW) if "\x1b[" in line]
    terminal = io.StringIO()
    Console(file=terminal, force_terminal=True, width=160, color_system="standard").print(
        view.status_renderable(canary(), events, now=NOW)
    )
    assert "\x1b[" in terminal.getvalue()
    assert "bbbb222222 (model 1.5.0)" in terminal.getvalue()


@pytest.mark.parametrize(
    "md",
    [
        {},
        {"metadata": {"name": "x"}, "status": None},
        {"status": "junk", "spec": "junk"},
        {"status": {"history": "junk", "analysis": {"results": [None, 3]}, "lastDrill": 1}},
        {"status": {"canaryRevision": "c", "currentStep": 9}, "spec": {"strategy": {}}},
    ],
)
def test_a_half_written_object_renders_without_raising(md: dict[str, Any]) -> None:
    lines = view.status_lines(md, [{"type": None}], now=NOW)
    assert lines[0].startswith("Name")


def test_the_view_does_not_change_the_object() -> None:
    md = canary()
    before = copy.deepcopy(md)
    view.status_lines(md, now=NOW)
    view.status_renderable(md, now=NOW)
    assert md == before
