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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from modelcanary.analysis import sequential
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
from modelcanary.analysis.formatting import number, odds, share
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
    state = previous.model_copy(deep=True) if previous is not None else None
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
    return _verdict(metric, state, alpha, limit, result)


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
        _store(evidence, sequential.update(_evidence(evidence, test), table, test))
        evidence.candidate_count, evidence.stable_count = events_c, events_s
    current.candidate_total, current.stable_total = candidate[0], stable[0]
    current.since = at


def _evidence(stored: EventEvidence, test: sequential.Null) -> sequential.Evidence:
    fresh = sequential.Evidence.start(test.psi0, test.side)
    judged = stored.judged or [0.0, 0.0, 0.0, 0.0]
    numerator, denominator = stored.mantel_haenszel or [0.0, 0.0]
    return sequential.Evidence(
        grid=fresh.grid,
        log_likelihood=list(stored.log_likelihood) or fresh.log_likelihood,
        test=list(stored.log_e) or fresh.test,
        mh_numerator=numerator,
        mh_denominator=denominator,
        dispersion=stored.dispersion,
        blocks=stored.blocks,
        candidate_events=judged[0],
        candidate_total=judged[1],
        stable_events=judged[2],
        stable_total=judged[3],
    )


def _store(stored: EventEvidence, evidence: sequential.Evidence) -> None:
    stored.log_likelihood = [round(x, 4) for x in evidence.log_likelihood]
    stored.log_e = [round(x, 4) for x in evidence.test]
    stored.mantel_haenszel = [evidence.mh_numerator, evidence.mh_denominator]
    stored.dispersion = round(evidence.dispersion, 4)
    stored.judged = [
        evidence.candidate_events,
        evidence.candidate_total,
        evidence.stable_events,
        evidence.stable_total,
    ]
    stored.blocks = evidence.blocks


# --------------------------------------------------------------------------- deciding


def _event_e(stored: EventEvidence) -> float:
    return math.exp(min(sequential.log_mean_exp(stored.log_e), 700.0))


def slice_e_value(current: SliceJudgement) -> float:
    """A slice's evidence: the average over its events (1 before any is tracked)."""
    if not current.events:
        return 1.0
    return math.fsum(_event_e(e) for e in current.events) / len(current.events)


def metric_e_value(state: CountJudgement, limit: int, *, sliced: bool) -> float:
    """The metric's evidence: the average over ``limit`` slices (and, for a sliced
    metric, all of them pooled), a slice not seen yet counting 1."""
    if not sliced:
        seen, slots = state.slices[:limit], limit
    else:
        seen = [s for s in state.slices if s.slice != ALL][:limit]
        seen += [s for s in state.slices if s.slice == ALL]
        slots = limit + 1
    return (math.fsum(slice_e_value(s) for s in seen) + (slots - len(seen))) / slots


Result = Callable[..., Judged]


def _verdict(
    metric: Metric, state: CountJudgement, alpha: float, limit: int, result: Result
) -> Judged:
    evidence = metric_e_value(state, limit, sliced=metric.slice is not None)
    threshold = 1 / alpha
    judged = [s for s in state.slices if any(e.judged and e.judged[1] > 0 for e in s.events)]
    if not judged:
        waiting = "counting starts at this look" if state.looks <= 1 else "no traffic compared yet"
        return result(Verdict.NO_DATA, f"{waiting} (both revisions need requests)", e_value=1.0)
    worst = max(judged, key=lambda s: (slice_e_value(s), s.slice == ALL))
    if metric.errors is not None and worst.slice == ALL:
        worst = _where_errors_concentrate(judged, worst)
    # The event with the most evidence; among equals, one that has some data.
    event = max(worst.events, key=lambda e: (_event_e(e), e.blocks))
    test = test_of(metric)
    stored = _evidence(event, test)
    effect = sequential.estimate(stored)
    bounds = sequential.interval(stored, alpha / (len(worst.events) * limit))
    candidate_share = _ratio(stored.candidate_events, stored.candidate_total)
    stable_share = _ratio(stored.stable_events, stored.stable_total)
    where = ""
    if metric.slice is not None:
        where = f"slice {worst.slice}: " if worst.slice != ALL else "all slices: "
    what = _describe(metric, worst, event.event)
    if metric.errors is not None:
        shares = f"candidate {share(candidate_share)} failed vs stable {share(stable_share)}"
    else:
        shares = (
            f"{what}: candidate {share(candidate_share)} vs stable {share(stable_share)}"
            " of requests"
        )
    found = f"{where}{shares} ({odds(effect, bounds.low, bounds.high)})"
    if metric.distribution is not None:
        found += _also_moved(metric, worst, event.event)
    verdict = Verdict.FAIL if evidence >= threshold else Verdict.PASS
    compare = ">=" if verdict is Verdict.FAIL else "<"
    message = f"{found}; e-value {number(evidence)} {compare} {number(threshold)}"
    if verdict is Verdict.PASS:
        message = f"no evidence of harm so far: {message}"
    return result(
        verdict,
        message,
        candidate=candidate_share,
        stable=stable_share,
        slice=worst.slice if metric.slice is not None and worst.slice != ALL else None,
        event=what,
        effect=_finite(effect),
        effect_low=bounds.low,
        effect_high=bounds.high,
        e_value=_finite(evidence),
    )


CONCENTRATED = 2.0
"""A slice whose candidate fails this many times the pool's excess holds the fault."""


def _where_errors_concentrate(
    judged: list[SliceJudgement], pooled: SliceJudgement
) -> SliceJudgement:
    """The slice to name when all slices pooled carry the most evidence.

    The pool gathers evidence fastest, so a fault in one slice can cross the
    threshold on the pool before it does on the slice (with fewer, longer
    looks, as on a loaded machine, it did), and "all slices" then hides where
    it is. A slice with evidence of its own (e-value above 1) whose candidate
    fails, in excess of stable, at least :data:`CONCENTRATED` times what the
    pool does is named instead. A fault spread over every slice has no such
    slice and stays "all slices". Naming only: the verdict is the pool's.
    """
    pooled_excess = max((_excess(e) for e in pooled.events), default=0.0)
    if pooled_excess <= 0:
        return pooled
    concentrated = [
        s
        for s in judged
        if s.slice != ALL
        and slice_e_value(s) > 1
        and max((_excess(e) for e in s.events), default=0.0) >= CONCENTRATED * pooled_excess
    ]
    return max(concentrated, key=slice_e_value, default=pooled)


def _excess(stored: EventEvidence) -> float:
    """How much more often the candidate had the event than stable, as a share."""
    candidate, candidate_total, stable, stable_total = stored.judged or [0.0, 0.0, 0.0, 0.0]
    return _ratio(candidate, candidate_total) - _ratio(stable, stable_total)


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return min(value, 1e300)


def _describe(metric: Metric, current: SliceJudgement, event: str) -> str:
    if metric.errors is not None:
        return "errors"
    if metric.latency is not None:
        return f"slower than {event.removeprefix('> ')}"
    names = [e.event for e in current.events]
    index = names.index(event)
    low = names[index - 1].removeprefix("le ") if index > 0 else "-Inf"
    return f"in ({low}, {event.removeprefix('le ')}]"


def _also_moved(metric: Metric, current: SliceJudgement, decided: str) -> str:
    """The other buckets that moved most, by share of requests, so a drift reads whole."""
    moves = []
    for stored in current.events:
        if stored.event == decided or not stored.judged:
            continue
        c = _ratio(stored.judged[0], stored.judged[1])
        s = _ratio(stored.judged[2], stored.judged[3])
        moves.append((abs(c - s), stored.event, c, s))
    moves.sort(reverse=True)
    shown = [
        f"{_describe(metric, current, name).removeprefix('in ')} {share(s)} -> {share(c)}"
        for gap, name, c, s in moves[:2]
        if gap >= 0.005
    ]
    return f"; also moved: {', '.join(shown)}" if shown else ""
