"""A count metric's stored evidence: kept between looks, read as e-values, and turned
into a verdict with a message that says where the evidence is.

The judge (``analysis.judge``) updates the evidence of each event of each slice at
every look; what it stores in the status (``EventEvidence``) is rounded, so that a
status write carries no noise. Reading it back gives the e-processes again, and
their averages give the slice's and the metric's evidence. The message names the
slice and event with the most evidence, and, for errors pooled over every slice,
the slice where they concentrate.

Pure: standard library and the API models only.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, TypeVar

from modelcanary.analysis import sequential
from modelcanary.analysis.counts import ALL
from modelcanary.analysis.formatting import number, odds, share
from modelcanary.api.analysis import Metric
from modelcanary.api.judging import CountJudgement, EventEvidence, SliceJudgement, Verdict


def evidence_of(stored: EventEvidence, test: sequential.Null) -> sequential.Evidence:
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


def store(stored: EventEvidence, evidence: sequential.Evidence) -> None:
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


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Result(Protocol[T_co]):
    """Builds the judge's answer from a verdict, its message and the row's figures."""

    def __call__(self, verdict: Verdict, message: str, **fields: Any) -> T_co: ...


def verdict_of(
    metric: Metric,
    state: CountJudgement,
    alpha: float,
    limit: int,
    result: Result[T],
    *,
    test: sequential.Null,
) -> T:
    """The metric's verdict from its stored evidence, with the message that explains it:
    the slice and event with the most evidence, the shares compared, the effect."""
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
    stored = evidence_of(event, test)
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
