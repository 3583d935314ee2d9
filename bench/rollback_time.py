"""Time from a bad candidate's first faulty answer to nginx serving 100% stable again.

Run with ``make bench-rollback`` (or ``python -m bench.rollback_time --runs 10``).
It stands up the full tier, Prometheus and the e2e world (operator process,
nginx, model servers, load at 100 rps) once, then rolls out a candidate that
answers 20% errors at 10% of the traffic, ``--runs`` times per judge, each in a
fresh namespace, and reports the distributions side by side:

* ``sequential``: the count metrics (errors, latency, score distribution), an
  1 s analysis interval, and nothing else; alpha 0.01 is shared by the three;
* ``errors-only``: the errors count metric alone, with all of alpha;
* ``threshold``: the threshold metrics the e2e world used before (an error rate
  over a 10 s window against max 0.05, p99 and mean score against stable), with
  the minSamples guard they need, at the same interval.

Timing goals live here, not in tests: the numbers depend on the machine, the
analysis interval (1 s), the scrape interval (1 s) and, for thresholds, the
rate window.

What one run measures:
    fault start  = the load generator's first response from the candidate
                   (its first weight above 0 is a few ms earlier)
    restored     = nginx has reloaded with the stable revision at 100%
                   (the route back on stable is written a little before)
    floor        = for the count judges, the load generator's k-th failed answer
                   from the candidate, where k is the fewest candidate errors on
                   which ANY test valid at the errors metric's share of alpha can
                   reject (see :func:`errors_needed`); ``restored - floor`` is
                   what the operator, Prometheus and nginx add to what the
                   traffic itself allows, split into the operator's part (until
                   the route sync, polling every 0.1 s, reads the route back on
                   stable) and nginx's reload.

The model servers draw their faults from a generator seeded by the revision, so
every run of one judge sees the same sequence of failed answers: the floor is
the same in each run, and the spread is the pipeline's alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kr8s
from kr8s.objects import Namespace

from bench.stats import distribution
from e2e.dataplane.scenario import (
    THRESHOLD_PADDING,
    WINDOW,
    CanaryScenario,
    count_metrics,
    threshold_metrics,
)
from e2e.harness import ControlPlane, PrometheusServer, Tier, find_toolchain
from e2e.harness.prometheus import SCRAPE_INTERVAL

INTERVAL = "1s"
ALPHA = 0.01
FIRST_WEIGHT = 10
"""The e2e manifest's first step; the candidate's share of requests while it is judged."""
JUDGES = {
    "sequential": lambda: count_metrics(sliced_errors=False),
    "errors-only": lambda: count_metrics(sliced_errors=False)[:1],
    "threshold": threshold_metrics,
}


def errors_needed(alpha_share: float, weight: int) -> int:
    """The fewest candidate errors any level-``alpha_share`` test can reject on.

    While stable fails nothing, each failed request landed on the candidate with
    probability ``weight/100`` under "no worse than stable" (the router does not look
    at outcomes), so k such failures have null probability (weight/100)^k: a valid
    test cannot reject before that is at most ``alpha_share`` (Neyman-Pearson: no
    likelihood ratio of those k observations exceeds (100/weight)^k).
    """
    needed = math.log(1 / alpha_share) / math.log(100 / weight)
    return max(1, math.ceil(needed - 1e-9))


def count_metric_share(judge: str) -> float | None:
    """The errors metric's share of alpha (Bonferroni over the count metrics)."""
    metrics = JUDGES[judge]()
    counted = [m for m in metrics if not m.get("query")]
    return ALPHA / len(counted) if counted else None


@dataclass(frozen=True)
class Timing:
    restored: float
    """Fault start to nginx serving stable at 100%."""
    route_read: float
    """Fault start to the route sync reading the route back on stable (within 0.1 s of
    the operator's write)."""
    floor: float | None
    """Fault start to the k-th failed answer (count judges)."""


def one_run(
    plane: ControlPlane,
    api: kr8s.Api,
    prometheus: PrometheusServer,
    workdir: Path,
    index: int,
    *,
    judge: str,
) -> Timing:
    """Seconds from fault start to restored, to the route on stable, and to the floor."""
    namespace = f"bench-rollback-{judge}-{index}"
    Namespace({"metadata": {"name": namespace}}, api=api).create()
    faults = {"2.0.0-errors": {"error_rate": 0.2}}
    with CanaryScenario(
        plane,
        api,
        namespace,
        prometheus,
        workdir / namespace,
        faults_for=lambda v: faults.get(v, {}),
        metrics=JUDGES[judge](),
        # The threshold metrics' relative p99 bound needs the padding it had.
        base_faults=THRESHOLD_PADDING if judge == "threshold" else None,
    ) as world:
        world.apply(world.manifest("1.0.0", interval=INTERVAL))
        status = world.wait_for_status(
            lambda s: s.get("phase") == "Healthy", timeout=120, what="the first revision"
        )
        stable_service = world.revision_service(status["stableRevision"])
        assert world.route_sync is not None
        assert world.load is not None
        world.route_sync.wait_until_applied({stable_service: 100}, timeout=30)
        world.apply(world.manifest("2.0.0-errors", interval=INTERVAL))
        status = world.wait_for_status(
            lambda s: s.get("canaryRevision") is not None, timeout=60, what="the candidate"
        )
        candidate = status["canaryRevision"]
        world.wait_for_status(
            lambda s: s.get("phase") == "RolledBack", timeout=180, what="the rollback"
        )
        restored = world.route_sync.wait_until_applied({stable_service: 100}, timeout=60)
        fault_start = world.load.first_seen(candidate)
        if fault_start is None:
            raise RuntimeError("the candidate never answered a request")
        share = count_metric_share(judge)
        floor = None
        if share is not None:
            kth = world.load.failure_at(candidate, errors_needed(share, FIRST_WEIGHT))
            floor = kth - fault_start if kth is not None else None
        timing = Timing(
            restored=restored.applied_at - fault_start,
            route_read=restored.observed_at - fault_start,
            floor=floor,
        )
    Namespace.get(namespace, api=api).delete()
    return timing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--judge", choices=[*JUDGES, "all"], default="all")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    judges = list(JUDGES) if args.judge == "all" else [args.judge]
    times: dict[str, list[float]] = {judge: [] for judge in judges}
    floors: dict[str, list[float]] = {judge: [] for judge in judges}
    operator_part: dict[str, list[float]] = {judge: [] for judge in judges}
    reloads: dict[str, list[float]] = {judge: [] for judge in judges}
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch:
        workdir = Path(scratch)
        plane = ControlPlane(find_toolchain(), workdir / "control-plane").start(Tier.FULL)
        prometheus = PrometheusServer(workdir / "prometheus").start()
        try:
            api = kr8s.api(kubeconfig=str(plane.kubeconfig))
            # Interleaved, so a slow spell of the machine hits both judges alike.
            for index in range(args.runs):
                for judge in judges:
                    timing = one_run(plane, api, prometheus, workdir, index, judge=judge)
                    times[judge].append(timing.restored)
                    reloads[judge].append(timing.restored - timing.route_read)
                    floor = timing.floor
                    at_floor = "" if floor is None else f" (evidence floor {floor:.2f} s)"
                    if floor is not None:
                        floors[judge].append(floor)
                        operator_part[judge].append(timing.route_read - floor)
                    print(f"run {index + 1} {judge}: {timing.restored:.2f} s{at_floor}", flush=True)
        finally:
            prometheus.stop()
            plane.stop()
    result = {
        "runs": args.runs,
        "analysis_interval": INTERVAL,
        "scrape_interval": SCRAPE_INTERVAL,
        "threshold_rate_window": WINDOW,
        "judges": {
            judge: {
                "seconds": [round(t, 2) for t in found],
                **distribution(found),
                "floor_seconds": [round(t, 2) for t in floors[judge]],
                "nginx_reload_seconds": [round(t, 2) for t in reloads[judge]],
            }
            for judge, found in times.items()
        },
    }
    print(json.dumps(result, indent=2))
    header = f"{'judge':<30} {'min':>6} {'median':>7} {'p90':>6} {'p95':>6} {'max':>6}"
    print(f"\n{header}  (seconds)")
    for judge, found in times.items():
        rows = [(judge, found)]
        share = count_metric_share(judge)
        if share is not None and floors[judge]:
            k = errors_needed(share, FIRST_WEIGHT)
            rows.append((f"  floor: error {k} arrives", floors[judge]))
            overhead = [t - f for t, f in zip(found, floors[judge], strict=True)]
            rows.append(("  restored - floor", overhead))
            rows.append(("    floor to route on stable", operator_part[judge]))
        rows.append(("  nginx reload", reloads[judge]))
        for label, values in rows:
            row = distribution(values)
            print(
                f"{label:<30} {row['min']:>6.2f} {row['median']:>7.2f} {row['p90']:>6.2f}"
                f" {row['p95']:>6.2f} {row['max']:>6.2f}"
            )
    print(f"reproduce: make bench-rollback RUNS={args.runs}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
