"""The operator's sequential judge, the real one, fed the simulated counters look by look.

Nothing of the judge is re-implemented here: each look's counters are turned
into the ``Answer``s Prometheus would have returned for the three count
queries (raw cumulative counters, one series per slice or per ``le`` and
slice, a series absent until its first increment), and handed to
``modelcanary.analysis.judge.judge`` with the metric's share of ``alpha``,
exactly as ``modelcanary.analysis.verdicts.evaluate`` splits it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from bench.judge_sim.world import (
    LATENCY_BOUNDS,
    SCORE_BOUNDS,
    SEGMENTS,
    Counters,
    Ints,
    Schedule,
    le_text,
)
from modelcanary.analysis.counts import Answer, Series
from modelcanary.analysis.judge import Arms, judge
from modelcanary.api.analysis import Metric
from modelcanary.api.judging import CountJudgement, Verdict

_REVISION = 'revision="{{revision}}"'
METRICS: tuple[Metric, ...] = tuple(
    Metric.model_validate(spec)
    for spec in (
        {
            "name": "errors",
            "errors": {
                "failed": f'sum(model_requests_total{{{_REVISION},code=~"5.."}})',
                "total": f"sum(model_requests_total{{{_REVISION}}})",
                "tolerance": 0,
            },
        },
        {
            "name": "latency",
            "latency": {
                "buckets": f"sum by (le, segment) "
                f"(model_request_duration_seconds_bucket{{{_REVISION}}})",
                "tolerance": 0.1,
            },
            "slice": {"label": "segment", "max": 3},
        },
        {
            "name": "scores",
            "distribution": {
                "buckets": f"sum by (le) (model_prediction_score_bucket{{{_REVISION}}})",
                "tolerance": 0,
            },
        },
    )
)
"""The three count metrics of every simulated canary: errors (unsliced), latency sliced
by segment (the default 10% tolerance), and the score distribution (two-sided)."""

_LATENCY_LABELS = [
    [{"le": le_text(bound), "segment": segment} for bound in (*LATENCY_BOUNDS, math.inf)]
    for segment in SEGMENTS
]
_SCORE_LABELS = [{"le": le_text(bound)} for bound in (*SCORE_BOUNDS, math.inf)]
_NO_LABELS: Mapping[str, str] = {}
_EMPTY = Answer(())
_EPOCH = datetime(2026, 11, 27, tzinfo=UTC)


def answers(counters: Counters, revision: int, scrape: int) -> dict[str, dict[str, Answer]]:
    """What each count query returns for one revision at one of its scrapes."""
    requests = counters.requests[revision, :, scrape]
    failed = int(counters.failed[revision, :, scrape].sum())
    total = int(requests.sum())
    errors = {
        "failed": Answer((Series(_NO_LABELS, float(failed)),)) if failed else _EMPTY,
        "total": Answer((Series(_NO_LABELS, float(total)),)) if total else _EMPTY,
    }
    series: list[Series] = []
    for segment in range(len(SEGMENTS)):
        if requests[segment] == 0:
            continue
        cumulative: Ints = np.cumsum(counters.latency[revision, segment, :, scrape])
        labels = _LATENCY_LABELS[segment]
        series.extend(Series(labels[b], float(v)) for b, v in enumerate(cumulative.tolist()))
    scores: Ints = np.cumsum(counters.score[revision, :, scrape])
    score_series = (
        tuple(Series(_SCORE_LABELS[b], float(v)) for b, v in enumerate(scores.tolist()))
        if scores[-1] > 0
        else ()
    )
    return {
        "errors": errors,
        "latency": {"buckets": Answer(tuple(series))},
        "scores": {"buckets": Answer(score_series)},
    }


@dataclass(frozen=True)
class Outcome:
    """When the judge rolled the canary back (None: never), and which metrics failed when."""

    rollback_at: float | None
    """Seconds after the candidate's first request."""
    failed_at: dict[str, float]
    """Per metric, the first failing look (seconds after the first candidate request)."""
    looks: int


def run(
    counters: Counters, alpha: float, *, all_metrics: bool, schedule: Schedule | None = None
) -> Outcome:
    """Every look of one canary; stop at the first Fail unless ``all_metrics``.

    With ``all_metrics`` each metric is judged to its own first Fail or the
    canary's end, so each metric's false rejections can be counted; the
    canary's rollback is still the earliest of them.
    """
    share = alpha / len(METRICS)
    state: dict[str, CountJudgement | None] = {m.name: None for m in METRICS}
    failed_at: dict[str, float] = {}
    looks = 0
    origin = counters.first_candidate_request
    # The operator hands the judge each look's time (latency gathers intervals of at
    # least 10 s) and says when the weight changed since the previous look (every
    # count metric closes its interval there).
    weights = schedule.weight(counters.looks).tolist() if schedule is not None else None
    for look, at in enumerate(counters.looks.tolist()):
        boundary = weights is not None and look > 0 and weights[look] != weights[look - 1]
        when = _EPOCH + timedelta(seconds=at)
        c_scrape, s_scrape = counters.scrape_index[look].tolist()
        candidate = answers(counters, 0, c_scrape)
        stable = answers(counters, 1, s_scrape)
        looks += 1
        for metric in METRICS:
            if metric.name in failed_at:
                continue
            arms = Arms(candidate[metric.name], stable[metric.name])
            judged = judge(metric, share, state[metric.name], arms, at=when, close=boundary)
            state[metric.name] = judged.state
            if judged.result.verdict is Verdict.FAIL:
                failed_at[metric.name] = at - origin
        if failed_at and (not all_metrics or len(failed_at) == len(METRICS)):
            break
    rollback = min(failed_at.values()) if failed_at else None
    return Outcome(rollback, failed_at, looks)
