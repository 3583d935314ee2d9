"""The analysis part of a ModelDeployment's status: verdicts, and the judge's memory.

``results`` is what people read: one row per metric with its verdict and, for
count metrics, the estimated effect with its interval and the e-value behind
the decision. ``judgements`` is what the sequential judge needs to continue
after a restart: per count metric and slice, the counters it saw at its last
look (to turn the next look into counts per interval) and its running evidence.
The judge's evidence is a product over every interval of the canary, so it
lives in the status like the rest of a rollout's state, written in the same
single patch per pass.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from modelcanary.api.base import (
    ROW_MESSAGE_BYTES,
    SLICE_VALUE_BYTES,
    ApiModel,
    ShownText,
    shown,
)

MAX_UNJUDGED_SHOWN = 10
"""Slice values beyond slice.max named in a judgement (the first few seen)."""

MAX_LATENCY_CUTS = 8
"""Latency bounds the judge keeps evidence for, per slice."""

MAX_DISTRIBUTION_BUCKETS = 24
"""Buckets a distribution metric may have: each is an event the judge keeps evidence for."""

MAX_GRID_POINTS = 15
"""Odds ratios on the judge's grid at most (its fixed points, the null's boundary and,
two-sided, its mirror): the length of each event's likelihood and test lists.

These three bound the size of the judge's memory in the status (see ``api/size.py``)."""


class Verdict(enum.StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    NO_DATA = "NoData"
    ERROR = "Error"
    """The query or its answer is wrong: waiting will not fix it."""
    OUTAGE = "Outage"
    """The query could not run (unreachable, timeout, 5xx): waiting may fix it."""


class MetricResult(ApiModel):
    """One metric's outcome in one evaluation."""

    metric: str
    """The metric's name."""

    candidate: float | None = None
    """The candidate's value; for a count metric, its share of requests with the deciding
    event (failed, slower than the bound, in the bucket). Absent when there was no data."""

    stable: float | None = None
    """The stable revision's value (for relative bounds), or its share of the same event."""

    verdict: Verdict
    """Pass, Fail, NoData, Error (the query or its answer is wrong) or Outage (the query
    could not run)."""

    message: Annotated[str, shown(ROW_MESSAGE_BYTES)] = ""
    """Which bound was checked, or why there was no verdict."""

    slice: Annotated[str, shown(SLICE_VALUE_BYTES)] | None = None
    """For a sliced count metric: the slice this row describes (the worst one)."""

    event: str | None = None
    """For a count metric: the event compared, e.g. errors, slower than 0.25 or (0.3, 0.4]."""

    effect: float | None = None
    """For a count metric: the estimated odds ratio of the event, candidate to stable."""

    effect_low: float | None = None
    """The lower end of the effect's anytime-valid interval; absent when unbounded."""

    effect_high: float | None = None
    """The upper end of the effect's anytime-valid interval; absent when unbounded."""

    e_value: float | None = None
    """For a count metric: the evidence that the candidate is worse; it fails at 1/alpha
    (its share of alpha)."""

    threshold: float | None = None
    """The e-value at which this count metric fails."""


class EventEvidence(ApiModel):
    """The judge's running evidence about one event of one slice."""

    event: str
    """errors, or a bucket bound: the event whose odds are compared."""

    candidate_count: float = 0
    """The candidate's event counter at the last look."""

    stable_count: float = 0
    """Stable's event counter at the last look."""

    log_likelihood: list[float] = Field(default_factory=list)
    """The conditional log-likelihood over the judge's grid of odds ratios."""

    log_e: list[float] = Field(default_factory=list)
    """Each test component's log evidence."""

    mantel_haenszel: list[float] = Field(default_factory=list)
    """Numerator and denominator of the Mantel-Haenszel odds ratio."""

    judged: list[float] = Field(default_factory=list)
    """Over the judged intervals: candidate events and requests, stable events and requests."""

    dispersion: float = 0
    """Squared residuals of the judged intervals, summed: how much more they varied than
    independent requests would (the judge tempers its evidence by it)."""

    blocks: Annotated[int, Field(ge=0)] = 0
    """Intervals that carried information about this event."""


class SliceJudgement(ApiModel):
    """The judge's memory of one slice ("" when the metric is not sliced)."""

    slice: str
    """The slice label's value."""

    candidate_total: float = 0
    """The candidate's request counter at the last look."""

    stable_total: float = 0
    """Stable's request counter at the last look."""

    resets: Annotated[int, Field(ge=0)] = 0
    """Looks skipped because a counter went down (a restarted pod)."""

    since: datetime | None = None
    """When the counters above were read: the start of the interval being gathered."""

    events: list[EventEvidence] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["event"],
        },
    )
    """One entry per event compared."""


class CountJudgement(ApiModel):
    """The sequential judge's memory of one count metric for the current candidate."""

    metric: str
    """The metric's name."""

    test: str
    """What is being tested (kind, tolerance, grid); a change restarts the evidence."""

    looks: Annotated[int, Field(ge=0)] = 0
    """Looks so far; the first only records where the counters stood."""

    slices: list[SliceJudgement] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["slice"],
        },
    )
    """Per slice, in the order they appeared."""

    unjudged: list[Annotated[str, shown(SLICE_VALUE_BYTES)]] = Field(default_factory=list)
    """Slice values seen beyond slice.max (the first few), which are not judged."""


class AnalysisStatus(ApiModel):
    """The latest analysis of the candidate."""

    last_run_at: datetime | None = None
    """When the checks last ran."""

    failures: Annotated[int, Field(ge=0)] = 0
    """Failed evaluations so far for this candidate."""

    no_data_since: datetime | None = None
    """Since when the checks have had no data, while they still have none."""

    outage_since: datetime | None = None
    """Since when Prometheus has been unreachable, while it still is."""

    error_since: datetime | None = None
    """Since when a query has been failing in a way waiting will not fix, while it still is."""

    candidate_seen_at: datetime | None = None
    """When Prometheus first answered with the candidate's series for every count
    metric. With count metrics, the candidate gets no traffic before this (or before
    the wait for it runs out): what the judge cannot see yet, it cannot catch."""

    visibility_wait: Literal["Waiting", "GaveUp"] | None = None
    """While the first step waits for the candidate to show in Prometheus, and after
    that wait ran out (the first step then went ahead without it)."""

    visibility_wait_since: datetime | None = None
    """When the first step began to wait for the candidate to show in Prometheus."""

    outcome: Literal["Pass", "Fail", "NoData", "Error", "Outage"] | None = None
    """The latest evaluation as a whole: Pass, Fail, NoData (held), Error (held under
    queryError) or Outage (held under outage)."""

    reason: ShownText = ""
    """Which metric, value and bound decided the outcome."""

    evaluations: Annotated[int, Field(ge=0)] = 0
    """Evaluations so far for this candidate."""

    weight: Annotated[int, Field(ge=0, le=100)] | None = None
    """The candidate's weight at the last look; a new weight brings the next look forward,
    so that no interval the judge compares spans two weights."""

    results: list[MetricResult] = Field(default_factory=list)
    """Per-metric results of the latest evaluation."""

    judgements: list[CountJudgement] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["metric"],
        },
    )
    """The sequential judge's running evidence, per count metric."""
