"""Rollback to the previous revision right after a promotion: warm pods vs a cold start.

Run with ``make bench-warm`` (or ``python -m bench.warm_restore --runs 10``). It
stands up the full tier (kube-apiserver, controller-manager, scheduler, kwok),
Prometheus and the e2e world (operator process, nginx, model servers, load)
once, then repeats, alternating the two modes so both see the same machine:

    warm   promote a new version with strategy.scaleDownDelay 10m, then at once
           ``rollback --to`` the previous revision: its pods are still Ready
    cold   the same with scaleDownDelay 0s, after its Deployment reached zero
           and its model server stopped: the rollback has to start it again

and reports, per mode, median and p95 of:

    restored        rollback requested -> status says the previous revision is
                    stable again (the router confirmed 100% on it)
    nginx switched  rollback requested -> nginx reloaded with 100% on it

The cold figures are what kwok and the harness can show: scheduling, a fake
kubelet marking the pod Ready and a loopback model server starting. A real
cluster adds image pulls and model loading, so the gap there is larger.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kr8s
from kr8s.objects import Deployment, Namespace

from bench.stats import nearest_rank
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Tier, find_toolchain
from e2e.harness.kubernetes import list_objects, wait_for
from modelcanary.workloads.builders import LABEL_REVISION

MODES = {"warm": "10m", "cold": "0s"}
FIGURES = ("restored", "nginx_switched")
# The pause makes the count metrics compare the two revisions at 50% before 100%, where
# stable takes no requests: without any comparison they would hold at 100% for good.
QUICK: dict[str, Any] = {
    "steps": [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"setWeight": 100}],
    "bake": "2s",
}


def _replicas(world: CanaryScenario, revision: str) -> tuple[int, int]:
    """(desired, ready) of a revision's Deployment."""
    (found,) = list_objects(
        world.api,
        Deployment,
        namespace=world.namespace,
        label_selector={LABEL_REVISION: revision},
    )
    raw: dict[str, Any] = dict(found.raw)
    status: dict[str, Any] = raw.get("status") or {}
    return int(raw["spec"].get("replicas") or 0), int(status.get("readyReplicas") or 0)


def promote(world: CanaryScenario, version: str, delay: str) -> tuple[str, str]:
    """Roll ``version`` out to promotion; (the previous stable revision, the new one)."""
    before = str(world.status()["stableRevision"])
    world.apply(world.manifest(version, scale_down_delay=delay, **QUICK))
    status = world.wait_for_status(
        lambda s: (
            s.get("phase") == "Healthy"
            and s.get("stableRevision") not in (None, before)
            and s.get("canaryRevision") is None
        ),
        timeout=180,
        what=f"{version} promoted",
    )
    return before, str(status["stableRevision"])


def one_rollback(world: CanaryScenario, mode: str, version: str, run: int) -> dict[str, float]:
    previous, _ = promote(world, version, MODES[mode])
    assert world.servers is not None
    assert world.route_sync is not None
    servers, route_sync = world.servers, world.route_sync
    if mode == "cold":
        wait_for(lambda: _replicas(world, previous) == (0, 0), timeout=60, what="cold")
        wait_for(lambda: previous not in servers.running(), timeout=30, what="server stopped")
    else:
        desired, ready = _replicas(world, previous)
        if not desired or ready < desired:
            raise RuntimeError(f"warm run: previous revision {previous} is not Ready")
    seen = len(route_sync.history())
    service = world.revision_service(previous)
    asked = time.monotonic()
    world.act(f"rollback {previous}", f"bench-{mode}-{run}")
    world.wait_for_status(
        lambda s: s.get("stableRevision") == previous and s.get("restoring") is None,
        timeout=120,
        what=f"{previous} restored",
    )
    restored = time.monotonic() - asked
    switched = wait_for(
        lambda: next((e for e in route_sync.history()[seen:] if e.weights == {service: 100}), None),
        timeout=60,
        what="nginx on the restored revision",
    )
    return {"restored": restored, "nginx_switched": switched.applied_at - asked}


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        f"{'mode':<6} {'runs':>4}  "
        + "  ".join(f"{name + ' median':>22} {name + ' p95':>19}" for name in FIGURES)
    ]
    for mode, results in runs.items():
        cells = []
        for name in FIGURES:
            values = [r[name] for r in results]
            cells.append(
                f"{statistics.median(values):>20.2f} s {nearest_rank(values, 0.95):>17.2f} s"
            )
        lines.append(f"{mode:<6} {len(results):>4}  " + "  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="rollbacks per mode")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-") as scratch:
        workdir = Path(scratch)
        plane = ControlPlane(find_toolchain(), workdir / "control-plane").start(Tier.FULL)
        prometheus = PrometheusServer(workdir / "prometheus").start()
        try:
            api = kr8s.api(kubeconfig=str(plane.kubeconfig))
            namespace = "bench-warm"
            Namespace({"metadata": {"name": namespace}}, api=api).create()
            with CanaryScenario(plane, api, namespace, prometheus, workdir / namespace) as world:
                world.apply(world.manifest("1.0.0"))
                world.wait_for_status(
                    lambda s: s.get("phase") == "Healthy", timeout=90, what="1.0.0 serving"
                )
                version = 0
                for run in range(args.runs):
                    for mode in MODES:  # alternated, so both modes share the machine's load
                        version += 1
                        figures = one_rollback(world, mode, f"1.{version}.0", run)
                        runs[mode].append(figures)
                        shown = ", ".join(f"{k} {v:.2f} s" for k, v in figures.items())
                        print(f"{mode} {run + 1}: {shown}", flush=True)
        finally:
            prometheus.stop()
            plane.stop()
    print()
    print(table(runs))
    print(f"\nreproduce: make bench-warm RUNS={args.runs}  (python -m bench.warm_restore)")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
