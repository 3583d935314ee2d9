"""The progress deadline: a candidate that cannot become Available is aborted, not waited on.

Without it a canary whose pods never come up (an image that does not pull, a
nodeSelector no node matches, a quota) waits forever at "waiting for the
candidate", the stuck rollout that Argo Rollouts (``progressDeadlineSeconds``
with ``progressDeadlineAbort``) and Flagger (``progressDeadlineSeconds``) users
report first. Here the canary is aborted back to stable once the candidate has
not been Available for ``strategy.progressDeadline``, with a reason that names
what was not ready: replicas ready/desired and the Deployment's own complaint.

The clock lives in the status (``canaryUnavailableSince``), never in memory,
so a restarted operator reads when the candidate stopped being Available and
reaches the same decision. It starts with the canary (a candidate must become
Available within the deadline) and is cleared whenever the candidate is
Available, so one that stops being Available mid-canary gets the whole
deadline again. While the rollout is paused (by a person, or by the outage
policy) the clock is stopped and restarts in full on resume (Argo does not
count a pause either): a person is in charge of the candidate then.

Availability with the replicas router differs: it scales the candidate by its
weight, so at 0% the candidate has no desired replicas and nothing is expected
of it. There the clock runs only while the candidate has fewer ready replicas
than the router asked for.
"""

from __future__ import annotations

import re
from datetime import timedelta

from modelcanary.api.base import parse_duration
from modelcanary.rollout.state import Pass

EVENT_REASON = "ProgressDeadlineExceeded"
"""The Warning event (and the condition reason) of a canary ended by its deadline."""

REASON_PREFIX = "progress deadline"
"""How every deadline reason starts ("progress deadline 10m exceeded: ...")."""

EXCEEDED = re.compile(rf"\b{REASON_PREFIX} \S+ exceeded\b")
"""Finds a deadline reason inside a longer message, for the Degraded condition's reason."""


def candidate_ready(work: Pass, revision: str) -> bool:
    """Whether the candidate has what it needs to take its share of the traffic."""
    seen = work.observed.revisions.get(revision)
    if seen is None or not seen.exists:
        return False
    if work.router_owns_replicas:
        return seen.ready_replicas >= seen.desired_replicas
    return seen.available


def overdue(work: Pass, revision: str) -> str | None:
    """Keep the candidate's clock; the reason to end its canary once the deadline passed."""
    status = work.status
    if status.paused or candidate_ready(work, revision):
        status.canary_unavailable_since = None
        return None
    since = status.canary_unavailable_since
    if since is None:
        since = status.canary_unavailable_since = work.now
    deadline = parse_duration(work.spec.strategy.progress_deadline)
    waited = work.now - since
    if waited < deadline:
        work.requeue((deadline - waited).total_seconds())
        return None
    return _reason(work, revision, waited)


def _reason(work: Pass, revision: str, waited: timedelta) -> str:
    seen = work.observed.revisions.get(revision)
    deadline = work.spec.strategy.progress_deadline
    if seen is None or not seen.exists:
        state = "its Deployment does not exist"
    else:
        state = f"{seen.ready_replicas}/{seen.desired_replicas} replicas ready"
        state += f"; Deployment: {seen.problem}" if seen.problem else "; no Deployment condition"
    return (
        f"{REASON_PREFIX} {deadline} exceeded: candidate {revision} not Available "
        f"for {_seconds(waited)} ({state})"
    )


def _seconds(elapsed: timedelta) -> str:
    return f"{int(elapsed.total_seconds())}s"
