"""The scale report's analysis phase: ``--canaries`` canaries judged at once, one Prometheus.

After the other phases, with all N objects held, a real Prometheus (the
e2e harness's, with its query log on) is started and ``--canaries`` of the
objects, spread over the namespaces and none of those the reaction phase
moved, get a new predictor version, two replicas (the replicas router cannot
give 10% of one pod, so one replica would be no canary pod at all), steps
that pause for an hour at 10% (50% of two pods), and an ``analysis`` section
whose queries go to that Prometheus. No
model server runs, so every query answers with no series: the metrics say
NoData, which with ``noData: hold`` and no ``noDataLimit`` holds the canary
for as long as it runs, and the operator keeps looking once per
``--analysis-interval``, as it would for a canary under real traffic.

Once every canary has had its first look, for ``--canary-window`` seconds:

    tick lag        how late each periodic look ran against when it was due
                    (the look grid's first instant after its previous look):
                    the operator's ``modelcanary_analysis_tick_lag_seconds``
                    histogram, observed by the pass when it runs the look,
                    read before and after the window; p50 and p99 are the
                    upper bounds of the buckets that hold them. Not from the
                    statuses: a look on the grid records the instant it
                    evaluated as ``status.analysis.lastRunAt``, so a status
                    says 0 s for every look however late its pass ran (the
                    bench read 0.000 s for all 1,068 looks at N=1,000). The
                    statuses, read with one LIST every second, count the
                    looks
    queries         Prometheus's own ``prometheus_http_requests_total``
                    for ``/api/v1/query`` before and after, divided by the
                    number of intervals in the window; the query log gives
                    the distinct query shapes (every string literal blanked),
                    which bound it if the batching holds: O(shapes), not O(N)

Argo Rollouts has no analysis in the equivalent model (a canary with
setWeight steps and no AnalysisTemplate), so its column says n/a.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import promtext
from bench.kube import cpu_seconds, spread, wait_until
from bench.operator_scale import (
    Bench,
    md_name,
    md_path,
    namespace_of,
    reaction_indices,
)
from e2e.harness.prometheus import PrometheusServer

FAILED = 'sum(model_requests_total{namespace="{{namespace}}",revision="{{revision}}",code=~"5.."})'
TOTAL = 'sum(model_requests_total{namespace="{{namespace}}",revision="{{revision}}"})'
LATENCY = (
    "histogram_quantile(0.99, sum by (le) (rate(model_request_duration_seconds_bucket"
    '{namespace="{{namespace}}",revision="{{revision}}"}[1m])))'
)
TICK_LAG = "modelcanary_analysis_tick_lag_seconds"
# A timed pause, not the other phases' pause without end: in the smoke runs, canaries
# with threshold metrics only that entered the pause in the pass that confirmed their
# weight had no look scheduled (status.analysis.lastRunAt stayed unset), see docs/scale.md.
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
QUERY_HANDLER = "/api/v1/query"
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class LoggedPrometheus(PrometheusServer):
    """The harness's Prometheus with its query log on, to see which queries arrive."""

    @property
    def query_log(self) -> Path:
        return self.workdir / "queries.log"

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["global"]["query_log_file"] = str(self.query_log)
        return config

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:  # noqa: S310
            return str(response.read().decode())


def analysis(address: str, interval: str) -> dict[str, Any]:
    return {
        "interval": interval,
        "prometheus": {"address": address},
        "noData": "hold",
        "metrics": [
            # A count metric (the sequential judge): looked at on its own clock from
            # the canary's start, so the looks never wait on a weight change.
            {"name": "errors", "errors": {"failed": FAILED, "total": TOTAL}},
            {"name": "p99-latency", "query": LATENCY, "max": 0.5, "maxRelativeToStable": 1.5},
        ],
    }


def canary_indices(args: argparse.Namespace) -> list[int]:
    """``--canaries`` objects spread over all, none of them one the reactions moved."""
    moved = set(reaction_indices(args))
    free = [index for index in range(args.objects) if index not in moved]
    return [free[k] for k in spread(min(args.canaries, len(free)), len(free))]


def query_shape(query: str) -> str:
    """A query with every string literal blanked: revisions, namespaces, matchers."""
    return _STRING.sub('"…"', " ".join(query.split()))


def look_lags(looks: dict[str, list[datetime]], interval: float) -> list[float]:
    """Seconds each look came after the instant it was due, over all canaries: the
    first instant of the epoch-aligned look grid after its previous look
    (``rollout.analysis.next_look_at``; hurried looks are not told apart)."""
    lags = []
    for times in looks.values():
        ordered = sorted(set(times))
        for a, b in itertools.pairwise(ordered):
            due = (math.floor(a.timestamp() / interval) + 1) * interval
            lags.append(b.timestamp() - due)
    return lags


def served_queries(metrics_text: str) -> float:
    """Instant queries Prometheus has answered, from its own /metrics."""
    return promtext.total(metrics_text, "prometheus_http_requests_total", handler=QUERY_HANDLER)


def _read_query_log(path: Path, since: float, until: float) -> Counter[str]:
    shapes: Counter[str] = Counter()
    if not path.exists():
        return shapes
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
        if since <= at <= until:
            shapes[query_shape(entry["params"]["query"])] += 1
    return shapes


def run(bench: Bench, workdir: Path) -> dict[str, Any]:
    args = bench.args
    interval = float(args.analysis_interval.rstrip("s"))
    prometheus = LoggedPrometheus(workdir / "prometheus")
    prometheus.start()
    try:
        return _measure(bench, prometheus, interval)
    finally:
        prometheus.stop()


def _measure(bench: Bench, prometheus: LoggedPrometheus, interval: float) -> dict[str, Any]:
    args, client = bench.args, bench.client
    indices = canary_indices(args)
    paths = {md_path(namespace_of(i, args.namespaces), md_name(i)): md_name(i) for i in indices}
    print(f"== modelcanary: {len(indices)} canaries with analysis at once", flush=True)
    body = analysis(prometheus.url, args.analysis_interval)
    # Two replicas: the replicas router cannot split one pod, so 10% of one replica
    # is no canary pod at all (rollout.granularity) and nothing would be judged.
    predictor = {"model": {"version": "3.0.0"}, "replicas": 2}
    patch = {"spec": {"predictor": predictor, "analysis": body, "strategy": {"steps": STEPS}}}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda path: client.must("PATCH", path, patch, "application/merge-patch+json"),
                paths,
            )
        )
    wanted = {(namespace_of(i, args.namespaces), md_name(i)) for i in indices}

    def looks_now() -> dict[str, datetime]:
        found = {}
        for item in client.must("GET", md_path())["items"]:
            key = (item["metadata"]["namespace"], item["metadata"]["name"])
            last = ((item.get("status") or {}).get("analysis") or {}).get("lastRunAt")
            if key in wanted and last and (item["status"].get("canaryWeight") or 0) > 0:
                found["/".join(key)] = datetime.fromisoformat(last.replace("Z", "+00:00"))
        return found

    wait_until(
        lambda: len(looks_now()) == len(wanted),
        timeout=max(120.0, 3 * interval),
        interval=1.0,
        what="every canary's first look at 10%",
    )
    first_looks = round(time.monotonic() - started, 1)
    print(f"  every canary looked at 10% after {first_looks} s", flush=True)
    bench.audit.take()
    operator_before, prometheus_before = bench.operator.metrics(), prometheus.metrics()
    cpu0, t0, wall0 = cpu_seconds(bench.pid), time.monotonic(), time.time()
    looks: dict[str, list[datetime]] = {}
    while time.monotonic() - t0 < args.canary_window:
        bench.alive()
        for key, at in looks_now().items():
            looks.setdefault(key, []).append(at)
        time.sleep(1.0)
    operator_after, prometheus_after = bench.operator.metrics(), prometheus.metrics()
    cpu1, t1, wall1 = cpu_seconds(bench.pid), time.monotonic(), time.time()
    requests = bench.audit.take()
    elapsed = t1 - t0
    intervals = elapsed / interval
    queries = promtext.total(
        prometheus_after, "prometheus_http_requests_total", handler=QUERY_HANDLER
    )
    queries -= promtext.total(
        prometheus_before, "prometheus_http_requests_total", handler=QUERY_HANDLER
    )
    lags = look_lags(looks, interval)
    shapes = _read_query_log(prometheus.query_log, wall0, wall1)
    lag_before = promtext.buckets(operator_before, TICK_LAG)
    lag_after = promtext.buckets(operator_after, TICK_LAG)
    figures: dict[str, Any] = {
        "canaries": len(indices),
        "interval_seconds": interval,
        "window_seconds": round(elapsed, 1),
        "first_looks_seconds": first_looks,
        "looks": len(lags),
        "tick_lag_p50_seconds": promtext.quantile_bound(lag_before, lag_after, 0.5),
        "tick_lag_p99_seconds": promtext.quantile_bound(lag_before, lag_after, 0.99),
        "tick_lag_looks_observed": promtext.total(operator_after, f"{TICK_LAG}_count")
        - promtext.total(operator_before, f"{TICK_LAG}_count"),
        "prometheus_queries_per_interval": round(queries / intervals, 1),
        "query_shapes": len(shapes),
        "queries_per_interval_by_shape": {
            shape: round(count / intervals, 1) for shape, count in shapes.most_common()
        },
        "operator_cpu_cores": round((cpu1 - cpu0) / elapsed, 4),
        "api_requests_per_minute": round(sum(requests.values()) / (elapsed / 60), 1),
        "api_requests_per_minute_by_kind": {
            kind: round(count / (elapsed / 60), 1) for kind, count in requests.most_common()
        },
    }
    print(
        f"  {len(lags)} looks: tick lag p50 at most {figures['tick_lag_p50_seconds']} s, "
        f"p99 at most {figures['tick_lag_p99_seconds']} s; "
        f"{figures['prometheus_queries_per_interval']} Prometheus queries per interval "
        f"({len(shapes)} shapes)",
        flush=True,
    )
    for shape, rate in figures["queries_per_interval_by_shape"].items():
        print(f"    {rate:8.1f}/interval  {shape[:110]}", flush=True)
    return figures
