"""What the operator's own /metrics costs at N ModelDeployments: memory, a pass's
recording, and a scrape's page.

``make bench-metrics`` (``python -m bench.metrics_page --objects 1000 10000
--compare 8969bbf``). The scale report at N = 10,000 found the page too big to
read in 5 s (docs/scale.md). This bench measures the cause alone, in processes of
their own: each side records N objects (``--canaries`` of them mid-canary with
three analysis metrics, the rest Healthy and once promoted), then renders the whole
page ``--scrapes`` times with prometheus-client's ``generate_latest``, as the
operator's HTTP thread does. ``--compare REV`` runs the same measurement against
the operator's source at another commit (a temporary git worktree), in the same
run, and prints both rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from bench.stats import distribution
from modelcanary import telemetry
from modelcanary.api.judging import AnalysisStatus, MetricResult, Verdict
from modelcanary.api.modeldeployment import (
    DrillMode,
    DrillSummary,
    ModelDeploymentStatus,
    Phase,
)

ROOT = Path(__file__).resolve().parent.parent


def statuses() -> tuple[ModelDeploymentStatus, ModelDeploymentStatus]:
    """A Healthy status and a mid-canary one with three metrics judged."""
    ended = datetime(2026, 11, 1, 3, tzinfo=UTC)
    drill = DrillSummary(
        name="d", mode=DrillMode.VERIFY, succeeded=True, started_at=ended, finished_at=ended
    )
    healthy = ModelDeploymentStatus(phase=Phase.HEALTHY, drill_history=[drill])
    rows = [
        MetricResult(metric="p99-latency", verdict=Verdict.PASS, candidate=0.21, stable=0.2),
        MetricResult(
            metric="errors",
            verdict=Verdict.PASS,
            candidate=0.001,
            stable=0.001,
            e_value=1.2,
            threshold=20.0,
            effect=1.0,
            effect_low=0.5,
            effect_high=2.0,
        ),
        MetricResult(metric="auc", verdict=Verdict.PASS, candidate=0.91, stable=0.9),
    ]
    canary = ModelDeploymentStatus(
        phase=Phase.PROGRESSING,
        canary_weight=10,
        drill_history=[drill],
        analysis=AnalysisStatus(outcome="Pass", reason="", results=rows),
    )
    return healthy, canary


def measure(objects: int, canaries: int, scrapes: int) -> dict[str, Any]:
    """One side, in this process: its registry starts empty."""
    healthy, canary = statuses()
    keys = [(f"scale-{i % 10}", f"model-{i:05d}") for i in range(objects)]
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    for index, (namespace, name) in enumerate(keys):
        telemetry.record_status(namespace, name, canary if index < canaries else healthy)
        if index >= canaries:
            telemetry.record_events(namespace, name, ["Promoted"])
    first = time.perf_counter() - started
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    for index, (namespace, name) in enumerate(keys):
        telemetry.record_status(namespace, name, canary if index < canaries else healthy)
    again = time.perf_counter() - started
    renders = []
    for _ in range(scrapes):
        started = time.perf_counter()
        page = generate_latest(telemetry.REGISTRY)
        renders.append(time.perf_counter() - started)
    return {
        "objects": objects,
        "record_first_us": first / objects * 1e6,
        "record_at_rest_us": again / objects * 1e6,
        "held_mib": held / 2**20,
        "renders_s": renders,
        "lines": page.count(b"\n"),
        "bytes": len(page),
    }


def run_side(source: Path, objects: int, canaries: int, scrapes: int) -> dict[str, Any]:
    """``measure`` in a fresh process importing the operator from ``source``."""
    env = {**os.environ, "PYTHONPATH": f"{source / 'operator'}:{ROOT}"}
    argv = [sys.executable, "-m", "bench.metrics_page", "--one", str(objects)]
    argv += ["--canaries", str(canaries), "--scrapes", str(scrapes)]
    done = subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def row(label: str, result: dict[str, Any]) -> str:
    renders = distribution(result["renders_s"], digits=3)
    return (
        f"| {label} | {result['objects']:,} | {result['lines']:,} | {result['bytes'] / 1e6:.1f} "
        f"| {renders['median']:.3f} | {renders['p95']:.3f} | {result['held_mib']:.1f} "
        f"| {result['record_first_us']:.0f} | {result['record_at_rest_us']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--canaries", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=11)
    parser.add_argument("--compare", metavar="REV", help="also measure the operator at REV")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.canaries, args.scrapes)))
        return
    sides = [("this tree", ROOT)]
    with tempfile.TemporaryDirectory() as scratch:
        if args.compare:
            old = Path(scratch) / "old"
            git = ["git", "-C", str(ROOT), "worktree"]
            subprocess.run([*git, "add", "--detach", str(old), args.compare], check=True)
            sides.append((args.compare, old))
        try:
            print(
                f"/metrics of N ModelDeployments ({args.canaries} mid-canary with 3 metrics, "
                f"the rest Healthy), {args.scrapes} renders each\n"
            )
            print(
                "| operator | N | lines | MB | render median (s) | render p95 (s) "
                "| held (MiB) | first record (µs) | record at rest (µs) |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for objects in args.objects:
                for label, source in sides:
                    result = run_side(source, objects, args.canaries, args.scrapes)
                    print(row(label, result), flush=True)
        finally:
            if args.compare:
                subprocess.run([*git, "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
