"""Time from a bad candidate's first faulty answer to nginx serving 100% stable again.

Run with ``make bench-rollback`` (or ``python -m bench.rollback_time --runs 10``).
It stands up the full tier, Prometheus and the e2e world (operator process,
nginx, model servers, load) once, then rolls out a candidate answering 20%
errors ``--runs`` times, each in a fresh namespace, and reports the
distribution. Timing goals live here, not in tests: the numbers depend on the
machine, the analysis interval, the scrape interval and the rate window.

What one run measures:
    fault start  = the load generator's first response from the candidate
    restored     = nginx has reloaded with the stable revision at 100%
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import kr8s
from kr8s.objects import Namespace

from e2e.dataplane.scenario import WINDOW, CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Tier, find_toolchain
from e2e.harness.prometheus import SCRAPE_INTERVAL

INTERVAL = "2s"


def one_run(
    plane: ControlPlane, api: kr8s.Api, prometheus: PrometheusServer, workdir: Path, index: int
) -> float:
    namespace = f"bench-rollback-{index}"
    Namespace({"metadata": {"name": namespace}}, api=api).create()
    faults = {"2.0.0-errors": {"error_rate": 0.2}}
    with CanaryScenario(
        plane,
        api,
        namespace,
        prometheus,
        workdir / namespace,
        faults_for=lambda v: faults.get(v, {}),
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
        seconds = restored.applied_at - fault_start
    Namespace.get(namespace, api=api).delete()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch:
        workdir = Path(scratch)
        plane = ControlPlane(find_toolchain(), workdir / "control-plane").start(Tier.FULL)
        prometheus = PrometheusServer(workdir / "prometheus").start()
        try:
            api = kr8s.api(kubeconfig=str(plane.kubeconfig))
            times = []
            for index in range(args.runs):
                seconds = one_run(plane, api, prometheus, workdir, index)
                times.append(seconds)
                print(f"run {index + 1}: {seconds:.2f} s", flush=True)
        finally:
            prometheus.stop()
            plane.stop()
    ordered = sorted(times)
    result = {
        "runs": len(times),
        "analysis_interval": INTERVAL,
        "scrape_interval": SCRAPE_INTERVAL,
        "rate_window": WINDOW,
        "seconds": [round(t, 2) for t in times],
        "min": round(ordered[0], 2),
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[max(0, int(0.9 * len(ordered)) - 1)], 2),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.mean(ordered), 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
