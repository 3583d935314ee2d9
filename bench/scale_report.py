"""The scale report (issue 15, items 5 and 6): our operator and Argo Rollouts, N objects each.

Run with ``make bench-scale N=1000`` (``python -m bench.scale_report --objects 1000``).
One full tier (etcd, kube-apiserver with a blocking metadata audit log,
kube-controller-manager, kube-scheduler, kwok's fake nodes) serves both
controllers in one run, one after the other, so that their CPU figures do not
mix. kube-controller-manager's client limit is raised (``--kcm-qps``, 500/s,
bursts of 1000, by default) for both: at its default of 20/s it paces pod
creation and so bounds the time to Healthy for both alike.

Argo Rollouts goes first, then is stopped, then its namespaces are deleted
(and waited for) before our operator starts: Argo's controller watches every
ReplicaSet and Pod in the cluster, so ours' left behind would weigh on its
memory; our operator watches only its own objects, but at N = 10,000 Argo's
20,000 pods and 10,000 Services left behind slowed kube-apiserver for it
(``--keep-argo-objects`` leaves them, as runs before 2026-11-29 did). Each has
namespaces of its own. The phases are described in
``bench.argo_scale``, ``bench.operator_scale`` and ``bench.scale_canaries``;
``docs/scale.md`` says what each figure means and holds the measured table.

The table is printed at the end (markdown), with every figure's detail as
JSON (``--json`` writes it to a file too). Exit status 1 if a controller
did not get every object Healthy or a phase failed (its later figures then
read n/a; the error is in the JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scale_canaries
from bench.argo_scale import ArgoBench
from bench.kube import workspace
from bench.operator_scale import Bench
from bench.phases import NotHealthyError
from bench.scale_table import table, verdicts
from e2e.dataplane.scenario import CRD_DIR
from e2e.harness import ControlPlane, Tier, find_toolchain
from e2e.harness.argo_rollouts import ARGO_USER, ArgoRolloutsController
from e2e.harness.binaries import find_argo_rollouts

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", "-N", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument(
        "--router",
        choices=("replicas", "gatewayAPI"),
        default="replicas",
        help="our router; replicas is Argo's model without a traffic router",
    )
    parser.add_argument("--rest", type=float, default=600.0, help="seconds of the rest window")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds from Healthy to rest")
    parser.add_argument("--startup-settle", type=float, default=5.0)
    parser.add_argument("--reactions", type=int, default=50)
    parser.add_argument("--canaries", type=int, default=100, help="0 skips the analysis phase")
    parser.add_argument("--analysis-interval", default="15s")
    parser.add_argument("--canary-window", type=float, default=150.0, help="seconds measured")
    parser.add_argument("--healthy-timeout", type=float, default=0.0, help="0: 0.6 s per object")
    parser.add_argument("--kcm-qps", type=float, default=500.0, help="burst is twice this")
    parser.add_argument(
        "--max-concurrent-passes", type=int, default=None, help="passed to our operator if set"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="our operator with run --no-gc-freeze (the GC freeze's A/B)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help="our operator in sharded mode with this many shard Leases (one replica owns them all)",
    )
    parser.add_argument(
        "--argo-services",
        action="store_true",
        help="a Service beside each Rollout, as its users apply (ours creates its own)",
    )
    parser.add_argument(
        "--keep-argo-objects",
        action="store_true",
        help="leave Argo's namespaces in the cluster while ours runs (deleted by default)",
    )
    parser.add_argument(
        "--controllers",
        default="argo,modelcanary",
        help="which to run, in this order (argo, modelcanary)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the logs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    return parser.parse_args(argv)


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = "+changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def _phases(result: dict[str, Any], steps: list[Callable[[], object]]) -> None:
    """Run ``steps`` in order; a failure is recorded in ``result`` and ends the run of
    this controller, keeping the figures measured before it."""
    for step in steps:
        try:
            step()
        except NotHealthyError as error:
            result.setdefault("not_healthy", str(error))
            return
        except Exception as error:  # the figures so far, and the other controller's, count
            traceback.print_exc()
            result["error"] = f"{getattr(step, '__name__', step)}: {type(error).__name__}: {error}"
            return


def run_argo(args: argparse.Namespace, plane: ControlPlane, workdir: Path) -> dict[str, Any]:
    controller = ArgoRolloutsController(
        find_argo_rollouts(), plane, workdir / "argo-rollouts", user=ARGO_USER
    )
    argo_args = argparse.Namespace(**vars(args), rollouts=args.objects)
    bench = ArgoBench(argo_args, plane, controller)
    steps: list[Callable[[], object]] = [bench.startup, bench.to_healthy, bench.rest]
    if args.reactions:
        steps.append(bench.reactions)
    steps += [bench.restart, bench.finish]
    try:
        _phases(bench.result, steps)
    finally:
        controller.stop()
    if not args.keep_argo_objects:
        _phases(bench.result, [bench.clear])
    return bench.result


def operator_args(args: argparse.Namespace) -> list[str]:
    """What ``run`` is given beside the bench's own flags."""
    extra = []
    if args.max_concurrent_passes:
        extra += ["--max-concurrent-passes", str(args.max_concurrent_passes)]
    if args.no_gc_freeze:
        extra.append("--no-gc-freeze")
    if args.shards:
        # Outside a pod there is no namespace of its own to put the Leases in.
        extra += ["--shards", str(args.shards), "--shard-namespace", "default"]
    return extra


def run_ours(args: argparse.Namespace, plane: ControlPlane, workdir: Path) -> dict[str, Any]:
    bench = Bench(args, plane, workdir / "operator", extra_args=operator_args(args))

    def canaries() -> None:
        bench.result["canaries"] = scale_canaries.run(bench, workdir)

    steps: list[Callable[[], object]] = [bench.startup, bench.create_all, bench.rest]
    if args.reactions:
        steps.append(bench.reactions)
    steps.append(bench.restart)
    if args.canaries:
        steps.append(canaries)
    steps.append(bench.finish)
    try:
        _phases(bench.result, steps)
    finally:
        bench.operator.stop()
    return bench.result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wall = time.monotonic()
    started = datetime.datetime.now(datetime.UTC)
    order = [name.strip() for name in args.controllers.split(",") if name.strip()]
    results: dict[str, dict[str, Any]] = {}
    with workspace(args.workdir) as workdir:
        plane = ControlPlane(
            find_toolchain(),
            workdir / "control-plane",
            audit=True,
            controller_manager_qps=(args.kcm_qps, int(args.kcm_qps * 2)) if args.kcm_qps else None,
        )
        try:
            plane.start(Tier.FULL)
            plane.install_crds(sorted(CRD_DIR.glob("*.yaml")))
            if "argo" in order:
                ArgoRolloutsController(find_argo_rollouts(), plane, workdir).install_crds()
            print(f"control plane up in {time.monotonic() - wall:.1f} s", flush=True)
            for name in order:
                runner = run_argo if name == "argo" else run_ours
                try:
                    results[name] = runner(args, plane, workdir)
                except Exception as error:  # the other controller's figures still count
                    traceback.print_exc()
                    results[name] = {"error": f"{type(error).__name__}: {error}"}
                if args.json:  # so far, in case a later phase takes the run down
                    args.json.write_text(json.dumps(results, indent=2))
        finally:
            plane.stop()
    ours, argo = results.get("modelcanary"), results.get("argo")
    kcm = f"{args.kcm_qps:g}/{int(args.kcm_qps * 2)} qps" if args.kcm_qps else "default qps"
    title = (
        f"N = {args.objects:,} ({args.namespaces} namespaces), rest window {args.rest:g} s, "
        f"{args.reactions} reactions, {args.canaries} canaries "
        f"(interval {args.analysis_interval}, window {args.canary_window:g} s); "
        f"kube-controller-manager {kcm}; "
        f"{started:%Y-%m-%d %H:%M} UTC, commit {commit()}"
        + (
            f", --max-concurrent-passes {args.max_concurrent_passes}"
            if args.max_concurrent_passes
            else ""
        )
        + (", --no-gc-freeze" if args.no_gc_freeze else "")
        + (f", sharded mode ({args.shards} shards, one replica)" if args.shards else "")
        + (", a Service beside each Rollout" if args.argo_services else "")
    )
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": results,
        "bench_wall_seconds": round(time.monotonic() - wall, 1),
    }
    print(json.dumps(report, indent=2))
    print()
    print(table(ours, argo, args.objects, title=title))
    print()
    for label, met, how in verdicts(ours or {}, argo, args.objects):
        print(f"- {label}: {'met' if met else 'not measured' if met is None else 'MISSED'} ({how})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    healthy = all(
        "not_healthy" not in result and "error" not in result for result in results.values()
    )
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
