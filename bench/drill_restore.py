"""Live rollback drills, repeated: how long does it take to move all traffic back?

Run with ``make bench-drill`` (or ``python -m bench.drill_restore --runs 10``).
It stands up the full tier, Prometheus and the e2e world (operator process,
nginx, model servers, load) once, promotes two revisions, then runs ``--runs``
live drills one after another against the same model and reports the
distribution of what each drill measured:

    time to restore   the switch to the previous known-good revision, until the
                      router reads back 100% on it (the drill's own figure)
    nginx switched    drill created -> nginx reloaded with 100% on it
    time to healthy   the switch -> its analysis passes (minSamples decides most)
    switch back       the router reads back the weights found at the start
    duration          drill start -> drill end, teardown included
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import kr8s
from kr8s.objects import Namespace, new_class

from e2e.dataplane.scenario import WINDOW, CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Tier, find_toolchain
from e2e.harness.kubernetes import wait_for
from e2e.harness.prometheus import SCRAPE_INTERVAL

RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)
FIGURES = ("time_to_restore", "nginx_switched", "time_to_healthy", "switch_back", "duration")


def one_drill(world: CanaryScenario, target_service: str) -> dict[str, float]:
    assert world.route_sync is not None
    seen = len(world.route_sync.history())
    created = time.monotonic()
    drill = RollbackDrill(
        {
            "metadata": {"generateName": "bench-live-", "namespace": world.namespace},
            "spec": {"modelDeployment": world.name, "mode": "live"},
        },
        api=world.api,
    )
    drill.create()

    def ended() -> dict[str, Any] | None:
        drill.refresh()
        status: dict[str, Any] = dict(drill.raw).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed", "Refused") else None

    status = wait_for(ended, timeout=180, interval=0.25, what=f"drill {drill.name}")
    if status["phase"] != "Succeeded":
        raise RuntimeError(f"drill {drill.name} {status['phase']}: {status.get('reason')}")
    switched = next(
        e for e in world.route_sync.history()[seen:] if e.weights == {target_service: 100}
    )
    started = _time(status["startedAt"])
    return {
        "time_to_restore": status["timeToRestoreSeconds"],
        "nginx_switched": switched.applied_at - created,
        "time_to_healthy": status["timeToHealthySeconds"],
        "switch_back": status["timeToSwitchBackSeconds"],
        "duration": _time(status["finishedAt"]) - started,
    }


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, int(0.9 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch:
        workdir = Path(scratch)
        plane = ControlPlane(find_toolchain(), workdir / "control-plane").start(Tier.FULL)
        prometheus = PrometheusServer(workdir / "prometheus").start()
        try:
            api = kr8s.api(kubeconfig=str(plane.kubeconfig))
            namespace = "bench-drills"
            Namespace({"metadata": {"name": namespace}}, api=api).create()
            with CanaryScenario(plane, api, namespace, prometheus, workdir / namespace) as world:
                target, _ = world.two_promoted("1.0.0", "1.1.0")
                for index in range(args.runs):
                    figures = one_drill(world, world.revision_service(target))
                    runs.append(figures)
                    shown = ", ".join(f"{k} {v:.2f} s" for k, v in figures.items())
                    print(f"drill {index + 1}: {shown}", flush=True)
        finally:
            prometheus.stop()
            plane.stop()
    result = {
        "runs": len(runs),
        "scrape_interval": SCRAPE_INTERVAL,
        "rate_window": WINDOW,
        **{name: distribution([run[name] for run in runs]) for name in FIGURES},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
