"""The scale report's pure parts: audit-log reading, metrics text, spreads, the table."""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from bench.audit import parse_line, peak_per_second, per_minute
from bench.kube import spread
from bench.operator_scale import Bench, gc_figures
from bench.phases import reaction_figures
from bench.promtext import buckets, quantile_bound, samples, series_objects, total
from bench.scale_canaries import canary_indices, look_lags, query_shape
from bench.scale_report import operator_args, parse
from bench.scale_table import ROWS, table, target_text, verdicts

pytestmark = pytest.mark.unit


def _event(user: str, stamp: str, **ref: str) -> str:
    return json.dumps(
        {
            "user": {"username": user},
            "verb": "patch",
            "objectRef": ref,
            "requestReceivedTimestamp": stamp,
        }
    )


def test_an_audit_line_is_one_users_request_with_its_time() -> None:
    line = _event(
        "op", "2026-11-28T04:00:01.250000Z", resource="modeldeployments", subresource="status"
    )
    request = parse_line(line, "op")
    assert request is not None
    assert request.kind == "patch modeldeployments/status"
    assert request.at == datetime(2026, 11, 28, 4, 0, 1, 250000, tzinfo=UTC).timestamp()
    assert parse_line(line, "someone-else") is None


def test_the_peak_is_the_busiest_whole_second_in_the_window() -> None:
    times = [100.1, 100.9, 101.0, 101.2, 101.5, 102.0, 150.0]
    assert peak_per_second(times, 100.0, 120.0) == (3, 101.0)
    # Outside the window does not count; the earlier second wins a tie.
    assert peak_per_second(times, 101.9, 200.0) == (1, 102.0)
    assert peak_per_second([], 5.0, 6.0) == (0, 5.0)


def test_per_minute_scales_counts_to_a_minute() -> None:
    assert per_minute(Counter({"get pods": 3, "list pods": 6}), 30) == {
        "list pods": 12.0,
        "get pods": 6.0,
    }


def test_spread_picks_distinct_indices_over_the_range_and_the_namespaces() -> None:
    picked = spread(50, 1000)
    assert len(set(picked)) == 50
    assert picked[:3] == [0, 21, 42]
    # Index i lives in namespace i % 10: every namespace gets its share.
    assert Counter(i % 10 for i in picked) == {ns: 5 for ns in range(10)}
    assert spread(5, 20) == [0, 5, 10, 15, 16]
    assert sorted(spread(7, 7)) == list(range(7))
    with pytest.raises(ValueError, match="cannot pick"):
        spread(3, 2)


def test_canaries_never_reuse_an_object_the_reactions_moved() -> None:
    args = argparse.Namespace(objects=1000, reactions=50, canaries=100)
    canaries = canary_indices(args)
    assert len(set(canaries)) == 100
    assert not set(canaries) & set(spread(50, 1000))
    assert len({i % 10 for i in canaries}) == 10


def test_reaction_figures_are_nearest_rank() -> None:
    figures = reaction_figures([0.1 * k for k in range(1, 101)])
    assert figures["p50"] == pytest.approx(5.0)
    assert figures["p99"] == pytest.approx(9.9)
    assert figures["count"] == 100


METRICS = """\
# HELP modelcanary_phase x
modelcanary_phase{namespace="a",name="m1",phase="Healthy"} 1.0
modelcanary_phase{namespace="a",name="m1",phase="Progressing"} 0.0
modelcanary_phase{namespace="b",name="m2",phase="Healthy"} 0.0
modelcanary_phase_other{namespace="c",name="m3",phase="Healthy"} 1.0
prometheus_http_requests_total{code="200",handler="/api/v1/query"} 40
prometheus_http_requests_total{code="400",handler="/api/v1/query"} 2
prometheus_http_requests_total{code="200",handler="/api/v1/query_range"} 7
lag_seconds_bucket{le="0.1"} 90
lag_seconds_bucket{le="1.0"} 99
lag_seconds_bucket{le="+Inf"} 100
plain_total 3
"""


def test_metrics_text_is_read_by_exact_name_and_labels() -> None:
    assert series_objects(METRICS, "modelcanary_phase", phase="Healthy") == {
        ("a", "m1"),
        ("b", "m2"),
    }
    assert total(METRICS, "prometheus_http_requests_total", handler="/api/v1/query") == 42
    assert list(samples(METRICS, "plain_total")) == [({}, 3.0)]


def test_a_quantile_is_bounded_by_its_bucket_between_two_readings() -> None:
    after = buckets(METRICS, "lag_seconds")
    assert after == {0.1: 90, 1.0: 99, math.inf: 100}
    assert quantile_bound({}, after, 0.5) == 0.1
    assert quantile_bound({}, after, 0.99) == 1.0
    assert quantile_bound({}, after, 1.0) == math.inf
    assert quantile_bound(after, after, 0.99) is None
    before = {0.1: 90, 1.0: 90, math.inf: 90}
    assert quantile_bound(before, after, 0.5) == 1.0


def test_query_shapes_blank_every_string() -> None:
    one = 'sum(rate(x{namespace="a",revision=~"r1|r2"}[1m]))'
    two = 'sum(rate(x{namespace="b",revision=~"r3"}[1m]))'
    assert query_shape(one) == query_shape(two) == 'sum(rate(x{namespace="…",revision=~"…"}[1m]))'


def test_look_lags_are_measured_against_the_grid_instant_after_the_previous_look() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)  # on the 15 s grid
    looks = {
        "a/m1": [t, t, t + timedelta(seconds=15.2), t + timedelta(seconds=30.2)],
        "b/m2": [t + timedelta(seconds=3)],
        "c/m3": [t + timedelta(seconds=3), t + timedelta(seconds=15.5)],
    }
    assert look_lags(looks, 15.0) == pytest.approx([0.2, 0.2, 0.5])


def _result(**overrides: object) -> dict[str, object]:
    result: dict[str, object] = {
        "startup_seconds": 1.5,
        "healthy_all_seconds": 40.0,
        "rss_mib": {"healthy": 200.0, "after_rest": 210.0},
        "rest": {"cpu_cores": 0.01, "api_requests_per_minute": 0.0, "passes_per_minute": 4.0},
        "reaction_seconds": {"p50": 0.2, "p99": 0.5},
        "restart": {"all_reconciled_seconds": 9.0, "peak_api_requests_per_second": 120},
        "canaries": {"tick_lag_p99_seconds": 0.05, "prometheus_queries_per_interval": 21.0},
    }
    result.update(overrides)
    return result


def test_the_table_has_a_row_per_figure_and_argo_has_no_analysis() -> None:
    argo = _result(healthy_all_seconds=30.0)
    text = table(_result(), argo, 1000, title="N = 1,000")
    lines = text.splitlines()
    assert lines[0] == "### N = 1,000"
    assert lines[2] == "| figure | modelcanary | Argo Rollouts | target |"
    assert len(lines) == 4 + len(ROWS)
    assert "| create → all Healthy (s) | 40.0 | 30.0 | ≤ 60, ≤ Argo |" in lines
    assert "| analysis tick lag p99 (s) | 0.050 | n/a | — |" in lines
    assert "| reaction p99 (s) | 0.500 | 0.500 | < 1, ≤ Argo |" in lines
    assert "| CPU at rest (cores) | 0.0100 | 0.0100 | ≤ 0.02, ≤ Argo |" in lines
    # A figure not measured reads n/a, not 0.
    assert "| startup (s) | n/a |" in table({}, None, 1000, title="t")


def test_gc_figures_are_the_full_collections_and_the_young_pauses() -> None:
    page = "\n".join(
        [
            "# TYPE modelcanary_gc_pause_seconds histogram",
            'modelcanary_gc_pause_seconds_bucket{generation="0",le="+Inf"} 900.0',
            'modelcanary_gc_pause_seconds_count{generation="0"} 900.0',
            'modelcanary_gc_pause_seconds_sum{generation="0"} 0.5',
            'modelcanary_gc_pause_seconds_count{generation="1"} 80.0',
            'modelcanary_gc_pause_seconds_sum{generation="1"} 0.25',
            'modelcanary_gc_pause_seconds_count{generation="2"} 9.0',
            'modelcanary_gc_pause_seconds_sum{generation="2"} 0.1694',
        ]
    )
    assert gc_figures(page) == {
        "full_collections": 9.0,
        "full_pause_seconds": 0.169,
        "young_pause_seconds": 0.75,
    }
    assert gc_figures("") == {
        "full_collections": 0.0,
        "full_pause_seconds": 0.0,
        "young_pause_seconds": 0.0,
    }


def test_the_gc_rows_are_ours_alone() -> None:
    ours = _result(gc={"ramp": {"full_pause_seconds": 0.374}, "restart": None})
    lines = table(ours, _result(), 1000, title="t").splitlines()
    assert "| full GC pauses over the ramp (s) | 0.37 | n/a | — |" in lines
    assert "| full GC pauses in the restart (s) | n/a | n/a | — |" in lines


def test_the_operator_is_run_with_the_flags_the_bench_was_given() -> None:
    assert operator_args(parse([])) == []
    assert operator_args(parse(["--max-concurrent-passes", "16", "--no-gc-freeze"])) == [
        "--max-concurrent-passes",
        "16",
        "--no-gc-freeze",
    ]
    assert operator_args(parse(["--shards", "1"])) == [
        "--shards",
        "1",
        "--shard-namespace",
        "default",
    ]


def test_targets_follow_the_issue_per_n() -> None:
    rss = next(row for row in ROWS if row.label == "RSS at Healthy (MiB)")
    assert target_text(rss, 1000) == "≤ 250, ≤ Argo"
    assert target_text(rss, 10000) == "< 1536, ≤ Argo"


def test_verdicts_hold_each_figure_to_its_target_and_to_argo() -> None:
    found = {
        label: met for label, met, _ in verdicts(_result(), _result(startup_seconds=1.0), 1000)
    }
    assert found["create → all Healthy (s)"] is True
    assert found["startup (s) vs Argo"] is False
    assert found["reaction p99 (s) vs Argo"] is True
    slow = _result(reaction_seconds={"p50": 0.2, "p99": 1.0})
    assert (
        dict((label, met) for label, met, _ in verdicts(slow, None, 1000))["reaction p99 (s)"]
        is False
    )
    unmeasured = verdicts({}, None, 1000)
    assert all(met is None for _, met, _ in unmeasured)


class PhasesPage:
    """An operator's /metrics after the reaction phase: one object paused mid-canary."""

    def metrics(self, names: Sequence[str] = ()) -> str:
        assert list(names) == ["modelcanary_phase"]
        return (
            'modelcanary_phase{name="m1",namespace="a",phase="Healthy"} 1.0\n'
            'modelcanary_phase{name="m2",namespace="a",phase="Paused"} 1.0\n'
        )


def test_the_restart_counts_every_object_passed_whatever_its_phase() -> None:
    bench = object.__new__(Bench)
    bench.operator = cast(Any, PhasesPage())
    assert bench.reconciled() == 2
