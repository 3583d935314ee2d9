"""How large a ModelDeployment can grow, so that one that could outgrow etcd is refused.

A ModelDeployment is one etcd value: metadata, spec (twice, when ``kubectl
apply`` keeps its last-applied annotation) and a status that grows as it is
used. etcd refuses any write above its ``--max-request-bytes`` (1.5 MiB by
default). A status that outgrew that could never be written again, so the
operator could no longer record a rollback, and the history it could not write
would be lost. The status is bounded by the spec (``revisionHistoryLimit``
entries, each with its full predictor and evidence; per count metric, slices
times events of running evidence), so the worst case can be computed from the
spec alone, and a spec whose worst case does not fit is refused before any
status is written for it.

CEL cannot measure a serialized size, so this is not an admission rule: it runs
wherever the models run (the operator, which sets ``InvalidSpec`` and touches
no traffic; ``modelcanary lint``; the CLI). The bound takes the current
predictor as the size of every predictor in the history: a revision that was
larger than today's is covered by the margin left below etcd's limit. Free text
the operator writes (reasons, messages, quoted errors, slice values) is cut to
a fixed length when written (``api/base.py``), which is what makes the status
bounded by the spec at all.
"""

from __future__ import annotations

import functools
import json
from typing import Final

from modelcanary.api.analysis import Analysis, Metric
from modelcanary.api.base import MESSAGE_BYTES, ROW_MESSAGE_BYTES, SLICE_VALUE_BYTES
from modelcanary.api.judging import (
    MAX_DISTRIBUTION_BUCKETS,
    MAX_GRID_POINTS,
    MAX_LATENCY_CUTS,
    MAX_UNJUDGED_SHOWN,
    CountJudgement,
    EventEvidence,
    MetricResult,
    SliceJudgement,
    Verdict,
)

ETCD_REQUEST_LIMIT: Final = 1_572_864
"""etcd's default --max-request-bytes: no object may be larger."""

OBJECT_BUDGET: Final = 1_048_576
"""What the worst case may reach: two thirds of etcd's limit, leaving the rest for
metadata, managedFields and predictors larger than the current one."""

IN_USE_ENTRIES: Final = 4
"""History entries kept beyond revisionHistoryLimit because they are in use (stable,
canary, last known-good, a revision being restored)."""

TEXT_BYTES: Final = MESSAGE_BYTES
"""One free-text field the operator writes (a reason, a message): the models cut it there."""

FIXED_STATUS_BYTES: Final = 64 * 1024
"""Everything in the status that the spec does not scale: phase, revisions, conditions,
the last action, drills (at most 20 kept), timestamps."""

ENTRY_FIELDS_BYTES: Final = 256
"""A history entry without its predictor, reason and evidence: revision, outcome, times."""

_WIDEST_FLOAT: Final = -1.2345678901234567e-300
_WIDE_NAME: Final = "x" * 63


def _bytes(model: MetricResult | EventEvidence | SliceJudgement | CountJudgement) -> int:
    return len(json.dumps(model.to_dict(), separators=(",", ":")))


@functools.cache
def result_row_bytes() -> int:
    """One row of results or evidence, every number at its widest."""
    row = MetricResult(
        metric=_WIDE_NAME,
        candidate=_WIDEST_FLOAT,
        stable=_WIDEST_FLOAT,
        verdict=Verdict.NO_DATA,
        message="m" * ROW_MESSAGE_BYTES,
        slice="s" * SLICE_VALUE_BYTES,
        event="e" * 48,
        effect=_WIDEST_FLOAT,
        effect_low=_WIDEST_FLOAT,
        effect_high=_WIDEST_FLOAT,
        e_value=_WIDEST_FLOAT,
        threshold=_WIDEST_FLOAT,
    )
    return _bytes(row)


@functools.cache
def event_bytes() -> int:
    """One event's running evidence, every list at the judge's largest grid."""
    floats = [_WIDEST_FLOAT] * MAX_GRID_POINTS
    event = EventEvidence(
        event="e" * 48,
        candidate_count=_WIDEST_FLOAT,
        stable_count=_WIDEST_FLOAT,
        log_likelihood=floats,
        log_e=floats,
        mantel_haenszel=floats[:2],
        judged=floats[:4],
        dispersion=_WIDEST_FLOAT,
        blocks=2**31,
    )
    return _bytes(event)


@functools.cache
def slice_fields_bytes() -> int:
    """One slice's judgement without its events."""
    return _bytes(
        SliceJudgement(
            slice="s" * SLICE_VALUE_BYTES,
            candidate_total=_WIDEST_FLOAT,
            stable_total=_WIDEST_FLOAT,
            resets=2**31,
            since=None,
        )
    ) + len('"since":"2026-01-01T00:00:00.000000Z",')


def events_per_slice(metric: Metric) -> int:
    """The most events the judge keeps evidence for, per slice of this metric."""
    if metric.errors is not None:
        return 1
    if metric.latency is not None:
        return MAX_LATENCY_CUTS
    return MAX_DISTRIBUTION_BUCKETS


def judgement_bytes(metric: Metric) -> int:
    """The judge's memory of one count metric at its largest."""
    slices = metric.slice.max + 1 if metric.slice is not None else 1  # + all slices pooled
    per_slice = slice_fields_bytes() + events_per_slice(metric) * (event_bytes() + 1)
    header = _bytes(CountJudgement(metric=_WIDE_NAME, test="t" * 256, looks=2**31))
    unjudged = MAX_UNJUDGED_SHOWN * (SLICE_VALUE_BYTES + 3)
    return header + slices * (per_slice + 1) + unjudged


def worst_case_bytes(
    *, spec_bytes: int, predictor_bytes: int, analysis: Analysis | None, history_limit: int
) -> int:
    """The largest the whole object can grow to for this spec, in bytes of JSON."""
    metrics = analysis.metrics if analysis is not None else []
    evidence = (len(metrics) + 1) * (result_row_bytes() + 1)  # + the minSamples row
    entry = ENTRY_FIELDS_BYTES + predictor_bytes + TEXT_BYTES + evidence
    history = (history_limit + IN_USE_ENTRIES) * (entry + 1)
    last_known_good = ENTRY_FIELDS_BYTES + TEXT_BYTES + evidence
    judgements = sum(judgement_bytes(m) + 1 for m in metrics if m.is_count)
    analysis_status = FIXED_STATUS_BYTES // 4 + evidence + judgements
    spec_twice = 2 * spec_bytes  # the spec, and kubectl's last-applied annotation
    return spec_twice + FIXED_STATUS_BYTES + history + last_known_good + analysis_status


def too_large(
    *, spec_bytes: int, predictor_bytes: int, analysis: Analysis | None, history_limit: int
) -> str | None:
    """Why this spec could outgrow the budget, naming what to reduce; None when it fits."""
    worst = worst_case_bytes(
        spec_bytes=spec_bytes,
        predictor_bytes=predictor_bytes,
        analysis=analysis,
        history_limit=history_limit,
    )
    if worst <= OBJECT_BUDGET:
        return None
    return (
        f"with revisionHistoryLimit {history_limit}, a predictor of {predictor_bytes} bytes and "
        f"these metrics, the object could grow to {worst} bytes; etcd takes at most "
        f"{ETCD_REQUEST_LIMIT} and the operator keeps it under {OBJECT_BUDGET}: lower "
        "revisionHistoryLimit, shrink the predictor's template, or judge fewer slices"
    )
