"""The measurements both controllers of the scale bench go through, written once.

Each takes what differs between our operator and Argo Rollouts as arguments
(its pid, how to read its reconcile counter, how to tell that an object has
been reconciled since a restart) and returns the figures as a dict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.audit import AuditTail, by_kind, peak_per_second, per_minute
from bench.kube import cpu_seconds, mib, rss_kib
from bench.stats import nearest_rank


class NotHealthyError(RuntimeError):
    """Not every object became Healthy in time; the figures so far are reported."""


def rest(
    pid: int,
    audit: AuditTail,
    seconds: float,
    *,
    passes: Callable[[], float | None],
    alive: Callable[[], None],
) -> dict[str, Any]:
    """CPU, passes and API requests of a controller at rest for ``seconds``.

    The audit log is read from where it was left: call ``audit.take()`` just
    before, so that only this window's requests are counted.
    """
    audit.take()
    cpu0, passes0, t0 = cpu_seconds(pid), passes(), time.monotonic()
    time.sleep(seconds)
    alive()
    cpu1, passes1, t1 = cpu_seconds(pid), passes(), time.monotonic()
    time.sleep(1.0)  # the last requests reach the audit log once answered
    counts = audit.take()
    elapsed = t1 - t0
    minutes = elapsed / 60
    per_min = None if passes0 is None or passes1 is None else (passes1 - passes0) / minutes
    return {
        "seconds": round(elapsed, 1),
        "cpu_cores": round((cpu1 - cpu0) / elapsed, 4),
        "passes_per_minute": None if per_min is None else round(per_min, 1),
        "api_requests_per_minute": round(sum(counts.values()) / minutes, 1),
        "api_requests_per_minute_by_kind": per_minute(counts, elapsed),
        "rss_mib": mib(rss_kib(pid)["VmRSS"]),
    }


def reaction_figures(seconds: Sequence[float]) -> dict[str, Any]:
    """p50 and p99 (nearest rank) of reaction times, with the runs."""
    return {
        "runs": [round(t, 3) for t in seconds],
        "count": len(seconds),
        "p50": round(nearest_rank(seconds, 0.5), 3),
        "p99": round(nearest_rank(seconds, 0.99), 3),
        "max": round(max(seconds), 3),
    }


def restart(
    *,
    stop: Callable[[], None],
    start: Callable[[], object],
    reconciled: Callable[[], int],
    objects: int,
    audit: AuditTail,
    timeout: float,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Stop the controller, start it again, and time until ``reconciled()`` reaches
    ``objects``; with the peak API requests in one second from the new process's
    start until then, from the audit log."""
    stopping = time.monotonic()
    stop()
    stopped = time.monotonic()
    audit.take()
    spawned_wall, spawned = time.time(), time.monotonic()
    start()
    ready = time.monotonic()
    deadline = spawned + timeout
    count = 0
    while True:
        count = reconciled()
        if count >= objects or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    done = time.monotonic()
    time.sleep(1.0)
    requests = audit.take_requests()
    end_wall = spawned_wall + (done - spawned) + 0.5
    peak, at = peak_per_second((r.at for r in requests), spawned_wall - 0.5, end_wall)
    window = [r for r in requests if spawned_wall - 0.5 <= r.at <= end_wall]
    figures = {
        "stop_seconds": round(stopped - stopping, 2),
        "ready_seconds": round(ready - spawned, 2),
        "all_reconciled_seconds": round(done - spawned, 1) if count >= objects else None,
        "reconciled": count,
        "peak_api_requests_per_second": peak,
        "peak_at_seconds": round(at - spawned_wall, 1),
        "api_requests": len(window),
        "api_requests_by_kind": dict(by_kind(window).most_common()),
    }
    print(
        f"  {count} of {objects} reconciled after {done - spawned:.1f} s; "
        f"peak {peak} API requests/s, {len(window)} requests",
        flush=True,
    )
    return figures
