"""The sequential judge of one count metric: candidate against stable, look by look.

Each look brings the revisions' cumulative counters (per slice). The judge
keeps the counters of its previous look, so the difference is one *block*:
what each revision answered in between. Per slice it compares *events*:

* ``errors``: the failed requests (one-sided: is the candidate worse?);
* ``latency``: the requests slower than a bucket bound (one-sided), at up to
  :data:`MAX_CUTS` bounds chosen, before any block is judged, from where
  stable's own requests fall (a bound no request of stable's comes near tells
  nothing);
* ``distribution``: the requests in each bucket (two-sided: did it move?).

Every event is an anytime-valid e-process (``analysis.sequential``). The
metric's evidence is their average: over the events of a slice, then over
``slice.max`` slices and all slices pooled, a slice that has not appeared
counting as 1. Latency gathers intervals of at least :data:`MIN_INTERVAL`
seconds and tempers them by the overdispersion seen so far: requests of one
process are not independent, and each revision is scraped at its own moment
(``make bench-judge`` shows what either costs without the defence). An average
of e-processes is one (Vovk and Wang's e-value merging), so "some slice is
worse at some event" is rejected at ``1/alpha_m`` with chance at most
``alpha_m`` when nothing is worse; the verdict names the slice and event
with the most evidence. The canary's ``alpha`` is split equally between its
count metrics (Bonferroni), so the whole canary stays within ``alpha``.

Pure: standard library and the API models only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from modelcanary.analysis import sequential
from modelcanary.analysis.count_evidence import evidence_of, store, verdict_of
from modelcanary.analysis.counts import (
    ALL,
    ERRORS_EVENT,
    Answer,
    Counters,
    CountsError,
    counters_of,
    with_all,
)
from modelcanary.analysis.failures import Failure
from modelcanary.api.analysis import (
    Metric,
)
from modelcanary.api.base import SLICE_VALUE_BYTES
from modelcanary.api.judging import (
    MAX_LATENCY_CUTS,
    MAX_UNJUDGED_SHOWN,
    CountJudgement,
    EventEvidence,
    MetricResult,
    SliceJudgement,
    Verdict,
)

MAX_CUTS = MAX_LATENCY_CUTS
MIN_STABLE_FOR_CUTS = 100
"""Stable requests seen before latency cuts are chosen from where they fall."""
CUT_SHARES = (0.0005, 0.6)
"""A cut is useful where some, but not most, of stable's requests are slower."""
GRID_VERSION = "g1"


@dataclass(frozen=True)
class Arms:
    """One count metric's answers at one look, by query part (failed, total, buckets)."""

    candidate: Mapping[str, Answer]
    stable: Mapping[str, Answer]


@dataclass(frozen=True)
class Judged:
    result: MetricResult
    state: CountJudgement


ADAPT = {"errors": False, "latency": True, "distribution": False}
"""Per kind, whether each interval is also tempered by the overdispersion seen so far."""
MIN_INTERVAL = {"errors": 0.0, "latency": 10.0, "distribution": 0.0}
"""Per kind, the shortest interval (seconds) compared: looks in between only gather.

Latency is where requests are least independent: a pause of one process slows the
requests it holds together, and each revision's counters are scraped at their own
moment, so a stall that hits both can land in different intervals of the two. Both
wash out over intervals much longer than a scrape; errors and scores do not need it
(`make bench-judge` measures each).
"""


def test_of(metric: Metric) -> sequential.Null:
    side: sequential.Side = "two-sided" if metric.distribution is not None else "greater"
    tolerance = next(
        kind.tolerance for kind in (metric.errors, metric.latency, metric.distribution) if kind
    )
    return sequential.Null(psi0=math.log1p(tolerance), side=side, adapt=ADAPT[metric.kind])


def fingerprint(metric: Metric) -> str:
    test = test_of(metric)
    return (
        f"{metric.kind} psi0={test.psi0:.6g} cap={test.cap:g} temper={test.temper:g}"
        f"{' adapt' if test.adapt else ''}"
        f" grid={GRID_VERSION}"
    )


def judge(
    metric: Metric,
    alpha: float,
    previous: CountJudgement | None,
    arms: Arms,
    *,
    at: datetime | None = None,
    close: bool = False,
) -> Judged:
    """One look at one count metric; ``alpha`` is this metric's share of the budget."""
    state = previous.deep_copy() if previous is not None else None
    restarted = state is not None and state.test != fingerprint(metric)
    if state is None or restarted:
        state = CountJudgement(metric=metric.name, test=fingerprint(metric))
    threshold = 1 / alpha

    def result(verdict: Verdict, message: str, **fields: object) -> Judged:
        note = " (judge settings changed: evidence restarted)" if restarted else ""
        row = MetricResult(
            metric=metric.name, verdict=verdict, message=message + note, threshold=threshold
        )
        return Judged(row.model_copy(update=fields), state)

    failed = [
        (role, answer)
        for role, answers in (("candidate", arms.candidate), ("stable", arms.stable))
        for answer in answers.values()
        if answer.error is not None
    ]
    if failed:
        # An error outranks an outage: it is the one that will not go away by itself.
        role, answer = min(failed, key=lambda pair: pair[1].kind is not Failure.ERROR)
        return result(Verdict(answer.kind.value), f"{role} query failed: {answer.error}")
    try:
        candidate = counters_of(metric, arms.candidate)
        stable = counters_of(metric, arms.stable)
    except CountsError as error:
        return result(Verdict.ERROR, f"cannot read counts: {error}")

    state.looks += 1
    limit = metric.slice.max if metric.slice is not None else 1
    _observe(metric, state, candidate, stable, limit, at=at, close=close)
    return verdict_of(metric, state, alpha, limit, result, test=test_of(metric))


# --------------------------------------------------------------------------- updating


def _observe(
    metric: Metric,
    state: CountJudgement,
    candidate: dict[str, Counters],
    stable: dict[str, Counters],
    limit: int,
    *,
    at: datetime | None,
    close: bool,
) -> None:
    """Fold one look into every slice either revision reports.

    A counter that does not exist yet has counted nothing: the candidate's series
    for a slice appear with its first request there, so a slice first seen after
    the metric's first look starts from zero for a revision that lacked it, and
    those first requests are judged rather than swallowed by a baseline.
    """
    test = test_of(metric)
    known = {s.slice: s for s in state.slices}
    first_look = state.looks == 1
    if metric.slice is not None:
        candidate, stable = with_all(candidate), with_all(stable)
    for slice_value in sorted(set(candidate) | set(stable)):
        current = known.get(slice_value)
        if current is None:
            judged = sum(1 for s in state.slices if s.slice != ALL)
            too_long = len(slice_value.encode()) > SLICE_VALUE_BYTES  # no room in the status
            if slice_value != ALL and (judged >= limit or too_long):
                if slice_value not in state.unjudged and len(state.unjudged) < MAX_UNJUDGED_SHOWN:
                    state.unjudged.append(slice_value)
                continue
            current = SliceJudgement(slice=slice_value)
            state.slices.append(current)
            if first_look:
                _baseline(
                    metric,
                    current,
                    candidate.get(slice_value, _NOTHING),
                    stable.get(slice_value, _NOTHING),
                    test,
                    at=at,
                )
                continue
        arms = (candidate.get(slice_value), stable.get(slice_value))
        totals = (current.candidate_total, current.stable_total)
        if any(arm is None and total > 0 for arm, total in zip(arms, totals, strict=True)):
            continue  # a revision's series went missing for now; compare when they are back
        _block(metric, current, arms[0] or _NOTHING, arms[1] or _NOTHING, test, at=at, close=close)


_NOTHING: Counters = (0.0, {})


def _tracked(metric: Metric, stable: Counters) -> list[str] | None:
    """The events to track, chosen from stable's counters; None until there is enough."""
    total, events = stable
    if metric.errors is not None:
        return [ERRORS_EVENT]
    if metric.distribution is not None:
        return list(events) or None
    if total < MIN_STABLE_FOR_CUTS:
        return None
    low, high = CUT_SHARES
    useful = [name for name, slower in events.items() if low < slower / total <= high]
    if not useful:
        fallback = [name for name, slower in events.items() if slower / total <= high]
        return fallback[:1] or None
    if len(useful) <= MAX_CUTS:
        return useful
    step = (len(useful) - 1) / (MAX_CUTS - 1)
    return [useful[round(i * step)] for i in range(MAX_CUTS)]


def _baseline(
    metric: Metric,
    current: SliceJudgement,
    candidate: Counters,
    stable: Counters,
    test: sequential.Null,
    *,
    at: datetime | None,
) -> None:
    """Start counting from here: this look's counters become the base of the next block."""
    current.candidate_total, current.stable_total = candidate[0], stable[0]
    current.since = at
    names = _tracked(metric, stable) if not current.events else [e.event for e in current.events]
    if names is None:
        return
    empty = sequential.Evidence.start(test.psi0, test.side)
    kept = {e.event: e for e in current.events}
    current.events = [
        kept.get(name)
        or EventEvidence(
            event=name,
            log_likelihood=list(empty.log_likelihood),
            log_e=list(empty.test),
        )
        for name in names
    ]
    for evidence in current.events:
        evidence.candidate_count = candidate[1].get(evidence.event, 0.0)
        evidence.stable_count = stable[1].get(evidence.event, 0.0)


def _block(
    metric: Metric,
    current: SliceJudgement,
    candidate: Counters,
    stable: Counters,
    test: sequential.Null,
    *,
    at: datetime | None,
    close: bool,
) -> None:
    """Judge what happened since the last look, or skip it when counters went down."""
    if not current.events:
        _baseline(metric, current, candidate, stable, test, at=at)
        return
    shortest = MIN_INTERVAL[metric.kind]
    since = current.since
    if (
        not close
        and at is not None
        and since is not None
        and (at - since).total_seconds() < shortest
    ):
        return  # the interval compared spans at least `shortest`, or ends at a new weight
    requests_c = candidate[0] - current.candidate_total
    requests_s = stable[0] - current.stable_total
    if not close and (requests_c == 0 or requests_s == 0):
        # Gather until both revisions have answered since the base: each revision's
        # counters reach Prometheus with its own scrape, so a look between the two
        # scrapes sees one side move alone. Judged then, such an interval carries no
        # information (its margins fix the split) and would use up the side that
        # moved: with looks more frequent than scrapes, every interval did, and a
        # failing candidate's evidence froze. The rule reads only the request
        # totals, which the test conditions on, so it keeps the test valid.
        return
    moved = [requests_c, requests_s]
    for evidence in current.events:
        moved.append(candidate[1].get(evidence.event, 0.0) - evidence.candidate_count)
        moved.append(stable[1].get(evidence.event, 0.0) - evidence.stable_count)
    if any(change < 0 for change in moved):
        # A counter went down: a pod restarted or left. What happened in between is
        # unknown, so this interval is skipped and the counters become the new base.
        current.resets += 1
        _baseline(metric, current, candidate, stable, test, at=at)
        return
    for evidence in current.events:
        events_c = candidate[1].get(evidence.event, 0.0)
        events_s = stable[1].get(evidence.event, 0.0)
        table = sequential.Table(
            candidate_events=events_c - evidence.candidate_count,
            candidate_total=requests_c,
            stable_events=events_s - evidence.stable_count,
            stable_total=requests_s,
        )
        store(evidence, sequential.update(evidence_of(evidence, test), table, test))
        evidence.candidate_count, evidence.stable_count = events_c, events_s
    current.candidate_total, current.stable_total = candidate[0], stable[0]
    current.since = at
