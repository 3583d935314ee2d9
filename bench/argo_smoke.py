"""Argo Rollouts' controller on the full tier: the groundwork of the side-by-side scale table.

Run with ``python -m bench.argo_smoke --rollouts 10`` (``make bench-argo-smoke``). It
builds the controller first if it is not cached (``make argo-rollouts``),
starts the full tier with an audit log as ``bench.operator_scale`` does,
installs Argo's CRDs, runs the upstream controller as a process under an
identity of its own (see ``e2e/harness/argo_rollouts.py`` for its flags and
why), and then, phase by phase:

    startup       seconds until its informers synced ("Started controller"),
                  RSS a few seconds later
    to healthy    N Rollouts created (canary, steps setWeight 10, pause {},
                  setWeight 100, as the ModelDeployments of
                  ``bench.operator_scale``; no traffic router, so the weight
                  is a replica ratio, the model of our replicas router; one
                  replica; the same pod template, which kwok runs) -> every
                  Rollout's status.phase is Healthy, polled with one LIST;
                  the namespaces and their default ServiceAccount (without
                  which no pod is admitted) are made first, untimed
    idle          CPU (utime+stime) per minute and API requests per minute
                  by verb and resource, from the audit log
    reaction      one Rollout's image changed -> its status (for the new
                  generation) names a new pod hash other than the stable
                  ReplicaSet's, phase Progressing or Paused (the canary has
                  started); and -> Paused at step 1, the canary at 10%

kube-controller-manager's client limit (20 requests/s, burst 30, by
default) paces the ReplicaSet controller's pod creation, which then bounds
the time to Healthy from about 100 Rollouts on (21.6 s for 100 at the
default, 9 to 13 s with ``--kcm-qps 500`` on a busy 2-core machine); it
bounds our operator's ModelDeployments the same way (their Deployments go
through two such controllers), so a comparison of that figure raises it.

The functions that create, wait and measure are meant for the scale bench
that will run this and ``bench.operator_scale`` in one run on one cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.operator_scale import AuditTail, Client, cpu_seconds, mib, rss_kib, workspace
from e2e.harness import ControlPlane, Tier, find_toolchain
from e2e.harness.argo_rollouts import ARGO_USER, ROLLOUTS_PATH, ArgoRolloutsController
from e2e.harness.binaries import find_argo_rollouts

IMAGE = "model-server:bench"  # what bench.operator_scale's pods run; kwok runs anything
# The same steps as bench.operator_scale's ModelDeployments: a started canary
# stops at 10% in a pause without end, so it does no further work.
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
CANARY_PHASES = ("Progressing", "Paused")


# --------------------------------------------------------------------------- objects


def namespace_of(index: int, namespaces: int) -> str:
    # Not bench.operator_scale's scale-N: both can share one cluster.
    return f"argo-{index % namespaces}"


def rollout_name(index: int) -> str:
    return f"rollout-{index:04d}"


def rollout(
    name: str, image: str = IMAGE, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A canary Rollout with setWeight steps and no traffic router, one replica."""
    labels = {"app": name}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": image}]},
            },
            "strategy": {"canary": {"steps": STEPS if steps is None else steps}},
        },
    }


def rollouts_path(namespace: str | None = None, name: str = "") -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{ROLLOUTS_PATH}{where}/rollouts" + (f"/{name}" if name else "")


def create_namespaces(client: Client, namespaces: int) -> None:
    for index in range(namespaces):
        name = namespace_of(index, namespaces)
        code, answer = client.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        if code >= 300 and code != 409:
            raise RuntimeError(f"namespace {name}: HTTP {code}: {answer}")


def wait_default_service_accounts(client: Client, namespaces: int, timeout: float = 60) -> None:
    """Pods are refused until the ServiceAccount controller made the namespace's
    ``default`` account (a few seconds under load); wait for it before timing."""
    deadline = time.monotonic() + timeout
    for index in range(namespaces):
        path = f"/api/v1/namespaces/{namespace_of(index, namespaces)}/serviceaccounts/default"
        while client.request("GET", path)[0] != 200:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no default ServiceAccount after {timeout:.0f} s: {path}")
            time.sleep(0.1)


def create_rollouts(client: Client, count: int, namespaces: int, *, workers: int = 8) -> float:
    """Create ``count`` Rollouts over ``namespaces`` namespaces (which
    :func:`create_namespaces` made); returns the seconds it took."""

    def create(index: int) -> None:
        body = rollout(rollout_name(index))
        client.must("POST", rollouts_path(namespace_of(index, namespaces)), body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - started


def list_rollouts(client: Client) -> list[dict[str, Any]]:
    """Every Rollout in the cluster, with one LIST."""
    items: list[dict[str, Any]] = client.must("GET", rollouts_path())["items"]
    return items


def phases(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str((item.get("status") or {}).get("phase", "-")) for item in items)


def wait_all_healthy(
    client: Client,
    count: int,
    *,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
    interval: float = 1.0,
    report_every: float = 10.0,
) -> float:
    """Poll until ``count`` Rollouts report status.phase Healthy; returns the monotonic
    time at which they first did. ``alive`` raises if the controller died."""
    started = time.monotonic()
    last_print = started
    deadline = started + timeout
    while True:
        alive()
        seen = phases(list_rollouts(client))
        now = time.monotonic()
        if seen["Healthy"] >= count:
            return now
        if now >= deadline:
            raise TimeoutError(
                f"after {timeout:.0f} s only {seen['Healthy']} of {count} Healthy: {dict(seen)}"
            )
        if now - last_print >= report_every:
            last_print = now
            print(f"  {now - started:6.1f} s: phases {dict(seen)}", flush=True)
        time.sleep(interval)


def canary_started(item: dict[str, Any]) -> bool:
    """The controller has seen the newest spec and runs a canary of a new pod hash."""
    status = item.get("status") or {}
    generation = str(item["metadata"]["generation"])
    return (
        status.get("observedGeneration") == generation
        and bool(status.get("currentPodHash"))
        and status.get("currentPodHash") != status.get("stableRS")
        and status.get("phase") in CANARY_PHASES
    )


def canary_paused_at_weight(item: dict[str, Any]) -> bool:
    """The canary reached its first pause (step 1: 10%)."""
    status = item.get("status") or {}
    return (
        canary_started(item)
        and status.get("phase") == "Paused"
        and status.get("currentStepIndex") == 1
    )


def change_image(
    client: Client, namespace: str, name: str, image: str, *, timeout: float = 60.0
) -> dict[str, float]:
    """Change one Rollout's image; seconds until its canary started, and until paused at 10%."""
    path = rollouts_path(namespace, name)
    # Custom resources take no strategic merge patch; the first container is "server".
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
    started = time.monotonic()
    client.must("PATCH", path, patch, "application/json-patch+json")
    found: dict[str, float] = {}
    deadline = started + timeout
    while "paused" not in found:
        item = client.must("GET", path)
        now = time.monotonic()
        if "started" not in found and canary_started(item):
            found["started"] = now - started
        if canary_paused_at_weight(item):
            found.setdefault("started", now - started)
            found["paused"] = now - started
        if now >= deadline:
            raise TimeoutError(
                f"{namespace}/{name}: no canary after {timeout:.0f} s: {item.get('status')}"
            )
        time.sleep(0.02)
    return found


def per_minute(counts: Counter[str], seconds: float) -> dict[str, float]:
    """Audit-log counts over ``seconds`` as requests per minute, busiest first."""
    minutes = seconds / 60
    return {kind: round(count / minutes, 1) for kind, count in counts.most_common()}


# --------------------------------------------------------------------------- the run


class ArgoBench:
    """The phases, each recording into ``result``; the scale bench runs them beside ours."""

    def __init__(
        self, args: argparse.Namespace, plane: ControlPlane, argo: ArgoRolloutsController
    ) -> None:
        self.args = args
        self.argo = argo
        self.client = Client(plane.kubeconfig)
        self.audit = AuditTail(plane.audit_log, argo.user)
        self.requests: dict[str, int] = {}
        self.result: dict[str, Any] = {
            "rollouts": args.rollouts,
            "namespaces": args.namespaces,
            "api_requests": self.requests,
        }
        self.rss_start = 0

    def alive(self) -> None:
        if not self.argo.is_running():
            raise RuntimeError(
                "the Argo Rollouts controller exited; log tail:\n" + self.argo.log_text()[-4000:]
            )

    def phase_requests(self, phase: str) -> Counter[str]:
        counts = self.audit.take()
        self.requests[phase] = sum(counts.values())
        print(f"  controller API requests: {self.requests[phase]}", flush=True)
        return counts

    def startup(self) -> None:
        print("== startup (0 Rollouts)", flush=True)
        started = time.monotonic()
        self.argo.start()
        self.result["startup_seconds"] = round(time.monotonic() - started, 2)
        time.sleep(self.args.startup_settle)
        self.alive()
        self.rss_start = rss_kib(self.argo.pid)["VmRSS"]
        self.result["rss_mib"] = {"startup": mib(self.rss_start)}
        print(
            f"  informers synced after {self.result['startup_seconds']} s; "
            f"RSS {mib(self.rss_start)} MiB",
            flush=True,
        )
        self.phase_requests("startup")

    def to_healthy(self) -> None:
        args, result, pid = self.args, self.result, self.argo.pid
        print(f"== {args.rollouts} Rollouts in {args.namespaces} namespaces", flush=True)
        create_namespaces(self.client, args.namespaces)
        wait_default_service_accounts(self.client, args.namespaces)
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        result["create_seconds"] = round(
            create_rollouts(self.client, args.rollouts, args.namespaces), 1
        )
        timeout = args.healthy_timeout or max(120.0, args.rollouts * 0.6)
        healthy = wait_all_healthy(self.client, args.rollouts, timeout=timeout, alive=self.alive)
        result["healthy_all_seconds"] = round(healthy - started, 1)
        result["ramp_cpu_seconds"] = round(cpu_seconds(pid) - cpu_before, 1)
        rss = rss_kib(pid)["VmRSS"]
        result["rss_mib"]["healthy"] = mib(rss)
        result["rss_kib_per_rollout"] = round((rss - self.rss_start) / args.rollouts, 1)
        print(
            f"  created in {result['create_seconds']} s, all Healthy after "
            f"{result['healthy_all_seconds']} s (controller CPU {result['ramp_cpu_seconds']} s); "
            f"RSS {mib(rss)} MiB",
            flush=True,
        )
        self.phase_requests("create_to_healthy")

    def idle(self) -> None:
        args, pid = self.args, self.argo.pid
        print(f"== idle: settle {args.settle:.0f} s, then measure {args.idle:.0f} s", flush=True)
        time.sleep(args.settle)
        self.alive()
        self.phase_requests("settle")
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        self.alive()
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        counts = self.phase_requests("idle")
        rss = rss_kib(pid)["VmRSS"]
        self.result["rss_mib"]["after_idle"] = mib(rss)
        minutes = (t1 - t0) / 60
        idle = {
            "seconds": round(t1 - t0, 1),
            "cpu_seconds_per_minute": round((cpu1 - cpu0) / minutes, 3),
            "api_requests_per_minute": round(sum(counts.values()) / minutes, 1),
            "api_requests_per_minute_by_kind": per_minute(counts, t1 - t0),
        }
        self.result["idle"] = idle
        print(
            f"  CPU {idle['cpu_seconds_per_minute']} s/min, "
            f"{idle['api_requests_per_minute']} API requests/min; RSS {mib(rss)} MiB",
            flush=True,
        )

    def reactions(self) -> None:
        args = self.args
        print(f"== reaction: {args.reactions} image changes, one at a time", flush=True)
        found = []
        for run in range(args.reactions):
            # Spread over the list, and so over the namespaces.
            index = (run * (args.rollouts // args.reactions) + run) % args.rollouts
            self.alive()
            namespace, name = namespace_of(index, args.namespaces), rollout_name(index)
            seconds = change_image(self.client, namespace, name, f"{IMAGE}-2")
            found.append({key: round(value, 3) for key, value in seconds.items()})
            print(
                f"  {name}: canary started after {seconds['started'] * 1e3:.0f} ms, "
                f"paused at 10% after {seconds['paused'] * 1e3:.0f} ms",
                flush=True,
            )
        self.result["reaction_seconds"] = found
        self.phase_requests("reactions")

    def finish(self) -> None:
        self.alive()
        pid = self.argo.pid
        # The kernel folds threads' RSS into VmHWM lazily: it can read below
        # an RSS sampled earlier, so the peak is the larger of the two.
        sampled = max(self.result["rss_mib"].values())
        self.result["rss_mib"]["peak"] = max(sampled, mib(rss_kib(pid)["VmHWM"]))
        self.result["controller_cpu_seconds_total"] = round(cpu_seconds(pid), 1)
        lines = self.argo.log_text().splitlines()
        self.result["controller_log"] = {
            "lines": len(lines),
            "errors": sum("level=error" in line for line in lines),
            "warnings": sum("level=warning" in line for line in lines),
        }
        print(f"== peak RSS (VmHWM) {self.result['rss_mib']['peak']} MiB", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--namespaces", type=int, default=2)
    parser.add_argument(
        "--idle", type=float, default=30.0, help="seconds of idle measured (0: skip)"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds between Healthy and idle"
    )
    parser.add_argument("--startup-settle", type=float, default=3.0)
    parser.add_argument("--reactions", type=int, default=1)
    parser.add_argument(
        "--healthy-timeout", type=float, default=0.0, help="0: 0.6 s per Rollout, 120 s at least"
    )
    parser.add_argument(
        "--leader-elect", action="store_true", help="upstream's default; off to match our operator"
    )
    parser.add_argument(
        "--kcm-qps",
        type=float,
        default=0.0,
        help="kube-controller-manager's client QPS (burst twice that); 0: its default, 20/30, "
        "which paces pod creation and so bounds time to Healthy beyond ~100 Rollouts",
    )
    parser.add_argument("--workdir", type=Path, help="keep the logs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    wall = time.monotonic()
    binaries = find_argo_rollouts()
    with workspace(args.workdir) as workdir:
        plane = ControlPlane(
            find_toolchain(),
            workdir / "control-plane",
            audit=True,
            controller_manager_qps=(args.kcm_qps, int(args.kcm_qps * 2)) if args.kcm_qps else None,
        )
        argo = ArgoRolloutsController(
            binaries,
            plane,
            workdir / "argo-rollouts",
            user=ARGO_USER,
            leader_elect=args.leader_elect,
        )
        try:
            plane.start(Tier.FULL)
            argo.install_crds()
            print(
                f"control plane up and CRDs installed in {time.monotonic() - wall:.1f} s",
                flush=True,
            )
            bench = ArgoBench(args, plane, argo)
            bench.startup()
            bench.to_healthy()
            if args.idle > 0:
                bench.idle()
            if args.reactions > 0:
                bench.reactions()
            bench.finish()
            result = bench.result
        finally:
            argo.stop()
            plane.stop()
    result["argo_rollouts_version"] = binaries.version
    result["kube_controller_manager_qps"] = args.kcm_qps or "default (20/30)"
    result["bench_wall_seconds"] = round(time.monotonic() - wall, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
