"""The operator's own metrics, on /metrics (prometheus-client).

Platform teams alert on these: a rollback, an analysis stuck holding, a model
whose canaries keep failing. Per ModelDeployment they carry ``namespace`` and
``name``; per metric also ``metric``. The DORA figures fall out of them:
deployments (promotions), change failure rate (rollbacks / canaries started),
and time to restore (time to rollback).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from modelcanary import gc_pauses, object_series
from modelcanary.api.modeldeployment import DrillSummary, ModelDeploymentStatus
from modelcanary.rollout import deadline

# A counter's *_created series is a second series per label set that Prometheus stores
# as a gauge of its own; nothing here reads it, and per-object counters double with it.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)


class GcPauseCollector(Collector):
    """``modelcanary_gc_pause_seconds{generation}``: how long each cyclic-GC collection
    stopped the process, from ``gc_pauses``'s counts (read, never locked)."""

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "modelcanary_gc_pause_seconds",
            "Python's cyclic garbage collections by generation: how long each stopped "
            "the process (2 is a full collection).",
            labels=["generation"],
        )
        for generation, counts in sorted(gc_pauses.PAUSES.items()):
            cumulative = [
                (f"{bound:g}", float(count))
                for bound, count in zip(gc_pauses.BUCKETS, counts.buckets, strict=True)
            ]
            cumulative.append(("+Inf", float(counts.count)))
            family.add_metric([str(generation)], cumulative, counts.total_seconds)
        yield family


REGISTRY.register(GcPauseCollector())

RECORDS = object_series.ObjectRecords()
"""Each ModelDeployment's phase, weight, analysis and last drill: its own series."""
object_series.register(RECORDS, REGISTRY)

CANARIES = Counter(
    "modelcanary_canaries_started",
    "Canaries started.",
    ["namespace", "name"],
    registry=REGISTRY,
)
PROMOTIONS = Counter(
    "modelcanary_promotions",
    "Revisions promoted to stable (deployments, in DORA terms).",
    ["namespace", "name"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "modelcanary_rollbacks",
    "Automatic rollbacks to the last known-good revision.",
    ["namespace", "name"],
    registry=REGISTRY,
)
PROGRESS_DEADLINES = Counter(
    "modelcanary_progress_deadline_exceeded",
    "Canaries whose candidate was not Available within strategy.progressDeadline.",
    ["namespace", "name"],
    registry=REGISTRY,
)
TIME_TO_ROLLBACK = Histogram(
    "modelcanary_time_to_rollback_seconds",
    "From the failing evaluation to the router taking the rollback weights.",
    ["namespace"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
DRILL_DURATION = Histogram(
    "modelcanary_drill_duration_seconds",
    "Wall time of a rollback drill, from start to the traffic put back.",
    ["namespace", "mode"],
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
DRILL_TIME_TO_RESTORE = Histogram(
    "modelcanary_drill_time_to_restore_seconds",
    "Live drills: from the switch to the router confirming all traffic on the rehearsed revision.",
    ["namespace"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
DRILL_FAILURES = Counter(
    "modelcanary_drill_failures",
    "Rollback drills that failed (a refused drill is not counted: it rehearsed nothing).",
    ["namespace", "name", "mode"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "modelcanary_reconcile_seconds",
    "Time for one pass: observe, decide, act, write status.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ANALYSIS_TICK_LAG = Histogram(
    "modelcanary_analysis_tick_lag_seconds",
    "How late a canary's periodic look at Prometheus ran against when it was due "
    "(the look grid's first instant after the last look): waiting for a pass slot, "
    "the event loop, the sleep.",
    # Fine between 0.25 and 5 s, where a queue of passes at one grid instant puts it.
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 30),
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "modelcanary_reconcile_errors",
    "Passes that failed to observe or act (they are retried).",
    ["namespace", "name", "stage"],
    registry=REGISTRY,
)

API_RATE_LIMIT_WAIT = Histogram(
    "modelcanary_api_rate_limit_wait_seconds",
    "Time each Kubernetes API request of the operator's client waited for the client-side "
    "rate limit (--api-qps, --api-burst); 0 when it did not wait. Its count is the requests.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
API_RATE_LIMIT_QPS = Gauge(
    "modelcanary_api_rate_limit_qps",
    "The client-side limit on the operator's API requests per second; 0 when it is off.",
    registry=REGISTRY,
)


def record_status(namespace: str, name: str, status: ModelDeploymentStatus) -> None:
    RECORDS.record((namespace, name), status)


def record_events(namespace: str, name: str, reasons: list[str]) -> None:
    for reason in reasons:
        if reason == "CanaryStarted":
            CANARIES.labels(namespace, name).inc()
        elif reason == "Promoted":
            PROMOTIONS.labels(namespace, name).inc()
        elif reason == "RolledBack":
            ROLLBACKS.labels(namespace, name).inc()
        elif reason == deadline.EVENT_REASON:
            PROGRESS_DEADLINES.labels(namespace, name).inc()


def record_drill(namespace: str, md_name: str, summary: DrillSummary) -> None:
    """A drill of ``md_name`` has just ended (called once, by the pass that ended it)."""
    if summary.finished_at is not None:
        duration = (summary.finished_at - summary.started_at).total_seconds()
        DRILL_DURATION.labels(namespace, summary.mode.value).observe(duration)
    if summary.time_to_restore_seconds is not None:
        DRILL_TIME_TO_RESTORE.labels(namespace).observe(summary.time_to_restore_seconds)
    if not summary.succeeded:
        DRILL_FAILURES.labels(namespace, md_name, summary.mode.value).inc()


def forget(namespace: str, name: str) -> None:
    """Drop a deleted ModelDeployment's series, so 1,000 come and go without a leak."""
    RECORDS.forget((namespace, name))


API_REQUESTS = Counter(
    "modelcanary_api_requests",
    "Requests the operator's API client (kr8s) sent to the API server, by verb; a "
    "watch counts once when it opens. kopf's own watches and patches are not counted.",
    ["verb"],
    registry=REGISTRY,
)
VIEW_OBJECTS = Gauge(
    "modelcanary_view_objects",
    "Objects held in the in-memory view the passes read (Deployments, HPAs, Services, "
    "drills, routes).",
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "modelcanary_view_watch_restarts",
    "Watches of the view broken by an error and listed again.",
    registry=REGISTRY,
)


def count_request(verb: str) -> None:
    API_REQUESTS.labels(verb).inc()
