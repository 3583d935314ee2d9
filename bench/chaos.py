"""Canaries under chaos: the operator SIGKILLed, Prometheus stopped, kube-apiserver restarted.

Run with ``make bench-chaos`` (or ``python -m bench.chaos --canaries 20 --seed 1``).
It stands up the full tier, its own Prometheus and the e2e world once, then
rolls out ``--canaries`` candidates (good or 20% errors, by the seed) while a
seeded chaos thread breaks things at random moments (see ``e2e/chaos.py``).
It prints one table and writes every fault and outcome to a JSON-lines log.

Must be zero: wrong final states (a good candidate rolled back or a bad one
promoted), lost and duplicated history entries. The exit status is 1 otherwise.
The same seed gives the same candidates and the same fault sequence; where the
faults land depends on the machine's timing, which is the point.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kr8s
from kr8s.objects import Namespace

from bench.stats import nearest_rank
from e2e.chaos import faults_for, run_chaos
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Tier, find_toolchain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--canaries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--log", type=Path, default=Path(tempfile.gettempdir()) / "modelcanary-chaos.jsonl"
    )
    args = parser.parse_args(argv)
    args.log.unlink(missing_ok=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="modelcanary-chaos-") as scratch:
        workdir = Path(scratch)
        plane = ControlPlane(find_toolchain(), workdir / "control-plane").start(Tier.FULL)
        prometheus = PrometheusServer(workdir / "prometheus").start()
        try:
            api = kr8s.api(kubeconfig=str(plane.kubeconfig))
            Namespace({"metadata": {"name": "chaos"}}, api=api).create()
            with CanaryScenario(
                plane, api, "chaos", prometheus, workdir / "world", faults_for=faults_for
            ) as world:
                report = run_chaos(
                    world, plane, canaries=args.canaries, seed=args.seed, log_path=args.log
                )
        finally:
            prometheus.stop()
            plane.stop()
    times = report.seconds_per_canary
    p95 = nearest_rank(times, 0.95)
    rows = [
        *report.rows(),
        ("seconds per canary (median / p95)", f"{statistics.median(times):.1f} / {p95:.1f}"),
        ("wall time (s)", f"{time.monotonic() - began:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for wrong in [*report.wrong_final_states, *report.lost_entries, *report.duplicated_entries]:
        print(f"  ! {wrong}")
    print(f"log: {args.log}")
    print(f"reproduce: make bench-chaos CANARIES={args.canaries} SEED={args.seed}")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
