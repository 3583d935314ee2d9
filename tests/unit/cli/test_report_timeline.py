"""The report's timeline model: windows, markers and bounds from the object and the series."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelcanary.cli.timeline import (
    CANDIDATE,
    STABLE,
    MarkerKind,
    Window,
    WindowError,
    build_timeline,
    choose_window,
    default_step,
    parse_moment,
)
from modelcanary.rollout.decide import FIRST_REVISION_NOTE

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]

T0 = datetime(2026, 11, 23, 22, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(seconds: float) -> float:
    return at(seconds).timestamp()


def iso(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def predictor(version: str) -> dict[str, Any]:
    return {
        "model": {"name": "fraud", "version": version, "uri": f"s3://models/fraud/{version}"},
        "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
    }


def entry(
    revision: str,
    version: str,
    outcome: str,
    span: tuple[float, float | None],
    reason: str = "",
) -> dict[str, Any]:
    created, finished = span
    raw: dict[str, Any] = {
        "revision": revision,
        "predictor": predictor(version),
        "outcome": outcome,
        "createdAt": iso(created),
        "reason": reason,
    }
    if finished is not None:
        raw["finishedAt"] = iso(finished)
    return raw


ROLLBACK_REASON = "error-rate: 0.2 > max 0.05"


def model_deployment(history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud-detector", "namespace": "ml"},
        "spec": {
            "analysis": {
                "prometheus": {"address": "http://prometheus:9090"},
                "metrics": [
                    {"name": "error-rate", "query": "q1", "max": 0.05},
                    {"name": "p99-latency", "query": "q2", "max": 1.0, "maxRelativeToStable": 2.0},
                    {
                        "name": "mean-score",
                        "query": "q3",
                        "minRelativeToStable": 0.7,
                        "maxRelativeToStable": 1.4,
                    },
                ],
            }
        },
        # Newest first, as the operator keeps it.
        "status": {"history": list(reversed(history))},
    }


HISTORY = [
    entry("aaaa111111", "1.0.0", "Promoted", (0, 2), FIRST_REVISION_NOTE),
    entry("bbbb222222", "1.1.0", "Promoted", (100, 160), ""),
    entry("cccc333333", "2.0.0-errors", "RolledBack", (300, 310), ROLLBACK_REASON),
]


# --------------------------------------------------------------------------- window


def test_default_window_is_the_latest_rollout_padded() -> None:
    window = choose_window(model_deployment(HISTORY), now=NOW)
    # 10 s long, so the padding is its 15 s floor on either side.
    assert window == Window(at(285), at(325))


def test_a_long_rollout_is_padded_by_a_tenth_of_its_length() -> None:
    history = [entry("dddd444444", "3.0.0", "Promoted", (0, 1000))]
    window = choose_window(model_deployment(history), now=NOW)
    assert window == Window(at(-100), at(1100))


def test_a_running_rollout_ends_now() -> None:
    history = [*HISTORY, entry("dddd444444", "3.0.0", "Progressing", (3000, None))]
    window = choose_window(model_deployment(history), now=at(3060))
    assert window.end == at(3060)
    assert window.start == at(3000 - 15)


def test_revision_picks_that_rollout_even_by_prefix() -> None:
    md = model_deployment(HISTORY)
    assert choose_window(md, now=NOW, revision="bbbb222222") == Window(at(85), at(175))
    assert choose_window(md, now=NOW, revision="bbbb") == Window(at(85), at(175))


def test_unknown_revision_names_the_known_ones() -> None:
    with pytest.raises(WindowError, match=r"eeee is not in status.history .*cccc333333"):
        choose_window(model_deployment(HISTORY), now=NOW, revision="eeee")


def test_since_and_until_win_over_the_rollout() -> None:
    md = model_deployment(HISTORY)
    window = choose_window(md, now=NOW, since=iso(50), until="2026-11-23T23:05:00+01:00")
    assert window == Window(at(50), at(300))


def test_since_as_a_duration_is_that_long_before_now_and_until_defaults_to_now() -> None:
    window = choose_window(model_deployment(HISTORY), now=NOW, since="30m")
    assert window == Window(NOW - timedelta(minutes=30), NOW)


def test_until_alone_keeps_the_rollout_start() -> None:
    window = choose_window(model_deployment(HISTORY), now=NOW, until=iso(305))
    assert window == Window(at(285), at(305))


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday", None, "neither an RFC 3339 time"),
        ("2026-11-23T22:00:00", None, "no time zone"),
        (iso(200), iso(100), "the window is empty"),
    ],
)
def test_bad_windows_say_why(since: str, until: str | None, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        choose_window(model_deployment(HISTORY), now=NOW, since=since, until=until)


@pytest.mark.parametrize(
    ("start", "end", "step", "grid"),
    [
        (0, 10, 1, 0),  # a whole number of steps: the window itself
        (0.0, 10.4, 1, -0.6),  # counted back from the end, covering the start
        (0.3, 10.4, 2, -1.6),  # 0.4 would leave the start out
        (0, 0.5, 1, -0.5),  # a window shorter than a step is still one step long
    ],
)
def test_the_query_grid_ends_on_the_window_end_and_covers_its_start(
    start: float, end: float, step: float, grid: float
) -> None:
    # The last sample before the end (a rollback's failing value) must be on a
    # point Prometheus evaluates; a grid counted from the start can miss it.
    assert Window(at(start), at(end)).grid_start(step) == at(grid)


@pytest.mark.parametrize("end", [10.0006, 10.0004, 10.9999, 10.0])
def test_the_query_never_ends_after_the_window(end: float) -> None:
    # Rounded to the nearest millisecond, 10.0006 became 10.001: Prometheus put
    # its last point there, after the window's end, and the picture clipped the
    # one point that held the rollback's failing value (a CI run drew 0.0).
    window = Window(at(0), at(end))
    start, last = (float(moment) for moment in window.query_range(1))
    assert last <= at(end).timestamp()
    assert at(end).timestamp() - last < 0.001
    assert (last - start) == pytest.approx(round(last - start)), "whole steps back from the end"
    assert start <= window.start.timestamp()


def test_no_history_needs_since() -> None:
    with pytest.raises(WindowError, match="give --since"):
        choose_window(model_deployment([]), now=NOW)
    assert choose_window(model_deployment([]), now=NOW, since="1h").start == T0


def test_parse_moment_reads_compound_durations() -> None:
    assert parse_moment("1h30m", NOW) == NOW - timedelta(minutes=90)


def test_default_step_aims_at_a_few_hundred_points_and_never_below_a_second() -> None:
    assert default_step(Window(at(0), at(60))) == 1.0
    assert default_step(Window(at(0), at(4000))) == 10.0


# --------------------------------------------------------------------------- markers


def weights_for_both_canaries() -> list[tuple[float, float]]:
    """The candidate's weight every 5 s: 10, 50, 100 for 1.1.0; 10 then 0 for the bad one."""
    plan = {100: 10, 120: 50, 140: 100, 160: 0, 300: 10, 310: 0}
    points: list[tuple[float, float]] = []
    weight = 0.0
    for second in range(90, 330, 5):
        weight = float(plan.get(second, weight))
        points.append((ts(second), weight))
    return points


def test_markers_from_history_and_weight_changes() -> None:
    window = Window(at(-10), at(330))
    timeline = build_timeline(
        model_deployment(HISTORY), window, weights_for_both_canaries(), {}, now=NOW
    )
    seen = [(m.kind, m.label, round(m.at - T0.timestamp())) for m in timeline.markers]
    assert seen == [
        (MarkerKind.START, "first revision 1.0.0", 0),
        (MarkerKind.START, "canary 1.1.0 starts", 100),
        (MarkerKind.STEP, "10%", 100),
        (MarkerKind.STEP, "50%", 120),
        (MarkerKind.STEP, "100%", 140),
        (MarkerKind.PROMOTION, "promoted 1.1.0", 160),
        (MarkerKind.START, "canary 2.0.0-errors starts", 300),
        (MarkerKind.STEP, "10%", 300),
        (MarkerKind.ROLLBACK, "rolled back 2.0.0-errors", 310),
    ]
    rollback = next(m for m in timeline.markers if m.kind is MarkerKind.ROLLBACK)
    assert rollback.reason == ROLLBACK_REASON
    assert rollback.revision == "cccc333333"


def test_stable_weight_is_the_rest_of_the_traffic() -> None:
    timeline = build_timeline(
        model_deployment(HISTORY),
        Window(at(90), at(330)),
        weights_for_both_canaries(),
        {},
        now=NOW,
    )
    assert [v for _, v in timeline.candidate_weight][:8] == [0, 0, 10, 10, 10, 10, 50, 50]
    assert all(
        c + s == 100
        for (_, c), (_, s) in zip(timeline.candidate_weight, timeline.stable_weight, strict=True)
    )


def test_the_window_says_which_rollouts_it_covers() -> None:
    md = model_deployment(HISTORY)
    only_the_rollback = build_timeline(md, Window(at(285), at(325)), [], {}, now=NOW)
    assert [(r.version, r.outcome, r.reason) for r in only_the_rollback.rollouts] == [
        ("2.0.0-errors", "RolledBack", ROLLBACK_REASON)
    ]
    both = build_timeline(md, Window(at(90), at(325)), [], {}, now=NOW)
    assert [r.revision for r in both.rollouts] == ["bbbb222222", "cccc333333"]
    # A marker outside the window is not drawn, even for a covered rollout.
    late = build_timeline(md, Window(at(150), at(200)), [], {}, now=NOW)
    assert [r.version for r in late.rollouts] == ["1.1.0"]
    assert [m.kind for m in late.markers] == [MarkerKind.PROMOTION]


def test_aborted_and_superseded_rollouts_are_marked_with_their_reason() -> None:
    history = [
        entry("aaaa111111", "1.0.0", "Superseded", (0, 20)),
        entry("bbbb222222", "1.1.0", "Aborted", (20, 40), "aborted by hand"),
    ]
    timeline = build_timeline(model_deployment(history), Window(at(-5), at(50)), [], {}, now=NOW)
    ends = [(m.kind, m.reason) for m in timeline.markers if m.kind is not MarkerKind.START]
    assert ends == [(MarkerKind.SUPERSEDED, ""), (MarkerKind.ABORT, "aborted by hand")]


# --------------------------------------------------------------------------- metrics and bounds


def test_relative_bounds_follow_stable_and_absolute_ones_are_flat() -> None:
    window = Window(at(295), at(315))
    stable = [(ts(300), 0.04), (ts(305), 0.05), (ts(310), 0.03)]
    candidate = [(ts(300), 0.05), (ts(305), 0.2), (ts(310), 0.3)]
    values = {
        ("p99-latency", CANDIDATE): candidate,
        ("p99-latency", STABLE): stable,
        ("mean-score", STABLE): [(ts(305), 0.5)],
    }
    timeline = build_timeline(model_deployment(HISTORY), window, [], values, now=NOW)
    panels = {panel.name: panel for panel in timeline.metrics}
    assert list(panels) == ["error-rate", "p99-latency", "mean-score"]
    latency = panels["p99-latency"]
    assert latency.candidate == tuple(candidate)
    bounds = {bound.label: bound for bound in latency.bounds}
    assert set(bounds) == {"max 1", "max 2x stable"}
    assert bounds["max 1"].points == (
        (window.start.timestamp(), 1.0),
        (window.end.timestamp(), 1.0),
    )
    assert not bounds["max 1"].relative
    relative = bounds["max 2x stable"]
    assert relative.relative
    assert relative.side == "max"
    assert [at for at, _ in relative.points] == [at for at, _ in stable]
    assert [v for _, v in relative.points] == pytest.approx([0.08, 0.10, 0.06])
    score = {bound.label: bound.points for bound in panels["mean-score"].bounds}
    assert [at for at, _ in score["min 0.7x stable"]] == [ts(305)]
    assert [v for _, v in score["min 0.7x stable"]] == pytest.approx([0.35])
    assert [v for _, v in score["max 1.4x stable"]] == pytest.approx([0.7])


def test_the_metric_named_in_a_rollback_reason_is_the_failed_one() -> None:
    timeline = build_timeline(model_deployment(HISTORY), Window(at(285), at(325)), [], {}, now=NOW)
    assert {panel.name: panel.failed for panel in timeline.metrics} == {
        "error-rate": True,
        "p99-latency": False,
        "mean-score": False,
    }


def test_values_are_kept_only_while_a_canary_runs_and_not_joined_across_canaries() -> None:
    # 1.1.0 runs 100-160 s, 2.0.0-errors 300-310 s. The gauge keeps its last value
    # between canaries: that is not analysis, and is left out.
    series = [(ts(s), v) for s, v in ((95, 1.0), (110, 0.1), (150, 0.2), (200, 0.2), (305, 0.3))]
    values = {("error-rate", CANDIDATE): series}
    window = Window(at(90), at(325))
    timeline = build_timeline(model_deployment(HISTORY), window, [], values, now=NOW)
    kept = timeline.metrics[0].candidate
    assert [round(at - T0.timestamp()) for at, _ in kept] == [110, 150, 305, 305]
    assert [v for _, v in kept][:2] == [0.1, 0.2]
    assert math.isnan(kept[2][1])
    assert kept[3][1] == 0.3


def test_the_deciding_evaluation_scraped_after_the_rollback_is_kept() -> None:
    # The failing value reaches Prometheus a scrape after the rollback at 310 s;
    # the same value scraped again later is the stale gauge and is dropped.
    series = [(ts(s), v) for s, v in ((305, 0.0), (309, 0.0), (312, 0.0), (313, 0.2), (318, 0.2))]
    values = {("error-rate", CANDIDATE): series}
    window = Window(at(285), at(325))
    timeline = build_timeline(model_deployment(HISTORY), window, [], values, now=NOW)
    kept = timeline.metrics[0].candidate
    assert [(round(at - T0.timestamp()), v) for at, v in kept] == [
        (305, 0.0),
        (309, 0.0),
        (313, 0.2),
    ]


def test_a_metric_no_longer_in_the_spec_is_still_drawn_without_bounds() -> None:
    values = {("old-metric", CANDIDATE): [(ts(305), 1.0)]}
    timeline = build_timeline(
        model_deployment(HISTORY), Window(at(285), at(325)), [], values, now=NOW
    )
    old = timeline.metrics[-1]
    assert old.name == "old-metric"
    assert old.bounds == ()
    assert old.candidate == ((ts(305), 1.0),)


def test_no_series_means_no_data() -> None:
    md = model_deployment(HISTORY)
    assert not build_timeline(md, Window(at(285), at(325)), [], {}, now=NOW).has_data
    assert build_timeline(md, Window(at(285), at(325)), [(ts(300), 0.0)], {}, now=NOW).has_data


def test_the_timeline_loads_no_cluster_client_http_or_drawing_library() -> None:
    # The model stays pure so it can be tested and reused without any of them.
    probe = (
        "import sys, modelcanary.cli.timeline; "
        "print(' '.join(sorted(m for m in ('kr8s', 'kopf', 'requests', 'httpx', "
        "'prometheus_api_client', 'matplotlib') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "operator"), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""


def test_the_min_samples_gate_is_not_drawn_as_a_metric() -> None:
    # Reported only while traffic is too low; otherwise its gauge is a stale count.
    md = model_deployment(HISTORY)
    md["spec"]["analysis"]["minSamples"] = {"query": "q0", "value": 50}
    values = {("minSamples", CANDIDATE): [(ts(305), 35.0)]}
    timeline = build_timeline(md, Window(at(285), at(325)), [], values, now=NOW)
    assert [panel.name for panel in timeline.metrics] == ["error-rate", "p99-latency", "mean-score"]
