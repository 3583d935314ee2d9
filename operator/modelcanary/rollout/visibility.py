"""Traffic waits until Prometheus can see the candidate.

Prometheus finds a new pod through service discovery, which it applies at
most every 5 s, and then scrapes it at its own phase: a candidate can serve
for seconds before any of its counters reach Prometheus. Requests served in
that time are not lost to the judge (its counters start from zero), but a bad
candidate serves them unjudged, and the time to catch it grows by however
long discovery took: bench-rollback measured 2.2 s when the candidate had
been scraped before its first request and up to 5 s when it had not.

So, with count metrics, the first step above 0% waits for a look at 0% that
found the candidate's series (requests or buckets) for every count metric:
a model server that exports its counters at zero from the start is visible
before it serves. One whose counters appear only with its first request can
never be seen that way; after :data:`WAIT` the first step goes ahead, once,
with a warning that says how to avoid the wait. Threshold metrics are not
affected: a rate over a window has no value before traffic anyway. Nor is
the replicas router: there the candidate's pods are its weight, and at 0% it
has none.
"""

from __future__ import annotations

from datetime import timedelta

from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.api.judging import AnalysisStatus
from modelcanary.rollout.state import POLL_SECONDS, Pass

WAIT = timedelta(seconds=30)
"""Longest wait for the candidate to show in Prometheus: discovery's 5 s, a few
scrape intervals, and room for a slow Kubernetes service discovery."""

EVENT_REASON = "CandidateNotVisible"
PARTS_SEEN = ("total", "buckets")
"""The query parts that exist before the first request when counters start at zero
(``failed`` need not: a server that never failed may have no such series)."""


def note_look(state: AnalysisStatus, observation: AnalysisObservation) -> None:
    """Record the first look whose answers hold the candidate's series."""
    if state.candidate_seen_at is None and candidate_visible(observation):
        state.candidate_seen_at = observation.at
        state.visibility_wait_since = None


def candidate_visible(observation: AnalysisObservation) -> bool:
    """Whether every count metric's answer for the candidate has at least one series."""
    if not observation.prometheus_online or not observation.counts:
        return False
    for arms in observation.counts.values():
        answers = [arms.candidate[part] for part in PARTS_SEEN if part in arms.candidate]
        if not answers or any(a.error is not None or not a.series for a in answers):
            return False
    return True


def may_send_traffic(work: Pass) -> bool:
    """Whether the first step above 0% may go ahead; sets the message when it waits."""
    analysis = work.spec.analysis
    state = work.status.analysis
    if analysis is None or not analysis.count_metrics or state is None:
        return True
    if work.router_owns_replicas:
        return True  # its pods are its weight: at 0% it has none to be seen
    if state.candidate_seen_at is not None or state.visibility_wait == "GaveUp":
        return True
    since = state.visibility_wait_since or work.now
    state.visibility_wait_since = since
    waited = work.now - since
    canary = work.status.canary_revision
    if waited >= WAIT:
        state.visibility_wait = "GaveUp"
        work.event(
            EVENT_REASON,
            f"Prometheus had no series of candidate {canary} for every count metric after"
            f" {WAIT.seconds}s; it gets traffic unseen, and the judge starts when its series"
            " appear. Export the counters at zero when the model server starts (for"
            " prometheus-client: call .labels(...) for them at start) so that it is seen"
            " before it serves.",
            warning=True,
        )
        return True
    state.visibility_wait = "Waiting"
    work.status.message = (
        f"waiting for Prometheus to see candidate {canary} before sending it traffic"
        f" ({int(waited.total_seconds())}s of at most {WAIT.seconds}s)"
    )
    work.requeue(POLL_SECONDS)
    return False
