"""Argo Rollouts' side of the scale report: its controller with N equivalent Rollouts.

``bench.scale_report`` (``make bench-scale``) runs the upstream controller
(``make argo-rollouts`` builds it; ``e2e/harness/argo_rollouts.py`` explains
its flags) on the same full tier and audit log as our operator, under an
identity of its own, and takes it through the same phases:

    startup       seconds until its informers synced ("Started controller")
    to healthy    N Rollouts created (canary, steps setWeight 10, pause {},
                  setWeight 100, as our ModelDeployments; no traffic router,
                  so the weight is a replica ratio, the model of our replicas
                  router; one replica; the same pod template, which kwok runs)
                  -> every Rollout's status.phase is Healthy, polled with one
                  LIST; the namespaces and their default ServiceAccount
                  (without which no pod is admitted) are made first, untimed.
                  With ``--argo-services`` each Rollout comes with the Service
                  its users apply beside it (the getting-started manifests do),
                  selecting its pods: what our replicas router's shared Service
                  is, which the operator creates itself
    rest          CPU, reconciles per minute (the sum of its
                  ``rollout_reconcile_count`` series) and API requests per
                  minute (audit log), RSS at the end
    reaction      one Rollout's image changed -> its status (for the new
                  generation) names a new pod hash other than the stable
                  ReplicaSet's, phase Progressing or Paused (the canary has
                  started); also recorded: -> Paused at step 1, at 10%
    restart       stopped and started again -> every Rollout has a
                  ``rollout_reconcile`` series on the new process's /metrics
                  (upstream observes it per namespace and name at the end of
                  each reconcile); peak API requests in one second meanwhile

kube-controller-manager's client limit (20 requests/s, burst 30, by
default) paces the ReplicaSet controller's pod creation, which then bounds
the time to Healthy from about 100 Rollouts on; it bounds our operator's
ModelDeployments the same way, so the report raises it for both.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import phases, promtext
from bench.audit import AuditTail
from bench.kube import Census, Client, cpu_seconds, mib, rss_kib, spread, wait_until
from bench.phases import NotHealthyError
from e2e.harness import ControlPlane
from e2e.harness.argo_rollouts import ROLLOUTS_PATH, ArgoRolloutsController

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


def service(name: str) -> dict[str, Any]:
    """The Service a user applies beside a Rollout: its pods, both revisions' alike."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
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


def remove_namespaces(
    client: Client, namespaces: int, *, timeout: float, interval: float = 2.0
) -> float:
    """Delete the Rollouts' namespaces and wait until they are gone, with everything
    in them (Rollouts, ReplicaSets, pods, Services); returns the seconds it took."""
    started = time.monotonic()
    paths = [f"/api/v1/namespaces/{namespace_of(i, namespaces)}" for i in range(namespaces)]
    for path in paths:
        code, answer = client.request("DELETE", path)
        if code >= 300 and code != 404:
            raise RuntimeError(f"DELETE {path}: HTTP {code}: {answer}")
    wait_until(
        lambda: all(client.request("GET", path)[0] == 404 for path in paths),
        timeout=timeout,
        interval=interval,
        what=f"the {namespaces} Argo namespaces and their objects deleted",
    )
    return time.monotonic() - started


def create_rollouts(
    client: Client, count: int, namespaces: int, *, workers: int = 8, services: bool = False
) -> float:
    """Create ``count`` Rollouts over ``namespaces`` namespaces (which
    :func:`create_namespaces` made), each with its :func:`service` if ``services``;
    returns the seconds it took."""

    def create(index: int) -> None:
        name, namespace = rollout_name(index), namespace_of(index, namespaces)
        if services:
            client.must("POST", f"/api/v1/namespaces/{namespace}/services", service(name))
        client.must("POST", rollouts_path(namespace), rollout(name))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - started


def rollout_phase(item: dict[str, Any]) -> str:
    return str((item.get("status") or {}).get("phase", "-"))


def wait_all_healthy(
    census: Census[str],
    count: int,
    *,
    timeout: float,
    alive: Callable[[], None] = lambda: None,
    interval: float = 0.2,
    report_every: float = 10.0,
) -> float:
    """Wait until ``count`` Rollouts report status.phase Healthy (``census`` holds each
    one's phase, from a watch); returns the monotonic time at which they first did.
    ``alive`` raises if the controller died."""
    started = time.monotonic()
    last_print = started
    deadline = started + timeout
    while True:
        alive()
        seen = Counter(census.values())
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
        print("== Argo Rollouts: startup (0 Rollouts)", flush=True)
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
        print(f"== Argo Rollouts: {args.rollouts} in {args.namespaces} namespaces", flush=True)
        create_namespaces(self.client, args.namespaces)
        wait_default_service_accounts(self.client, args.namespaces)
        timeout = args.healthy_timeout or max(120.0, args.rollouts * 0.6)
        with Census(self.client, rollouts_path(), rollout_phase) as census:
            cpu_before = cpu_seconds(pid)
            started = time.monotonic()
            result["create_seconds"] = round(
                create_rollouts(
                    self.client,
                    args.rollouts,
                    args.namespaces,
                    services=getattr(args, "argo_services", False),
                ),
                1,
            )
            try:
                healthy = wait_all_healthy(census, args.rollouts, timeout=timeout, alive=self.alive)
            except TimeoutError as error:
                print(f"  {error}", flush=True)
                raise NotHealthyError(str(error)) from None
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

    def reconcile_counts(self) -> dict[tuple[str, str], float]:
        """rollout_reconcile_count per Rollout, from the controller's /metrics."""
        return {
            (labels.get("namespace", ""), labels.get("name", "")): value
            for labels, value in promtext.samples(self.argo.metrics(), "rollout_reconcile_count")
        }

    def passes(self) -> float:
        return sum(self.reconcile_counts().values())

    def rest(self) -> None:
        args, pid = self.args, self.argo.pid
        print(f"== Argo Rollouts: settle {args.settle:.0f} s, rest {args.rest:.0f} s", flush=True)
        time.sleep(args.settle)
        self.alive()
        self.phase_requests("settle")
        rest = phases.rest(pid, self.audit, args.rest, passes=self.passes, alive=self.alive)
        self.requests["rest"] = round(rest["api_requests_per_minute"] * rest["seconds"] / 60)
        self.result["rest"] = rest
        self.result["rss_mib"]["after_rest"] = rest["rss_mib"]
        print(
            f"  CPU {rest['cpu_cores']} cores, {rest['passes_per_minute']} reconciles/min, "
            f"{rest['api_requests_per_minute']} API requests/min; RSS {rest['rss_mib']} MiB",
            flush=True,
        )
        for kind, rate in rest["api_requests_per_minute_by_kind"].items():
            print(f"    {rate:8.1f}/min  {kind}", flush=True)

    def restart(self) -> None:
        """Stop and start the controller; every Rollout reconciled again is every Rollout
        with a ``rollout_reconcile`` series on the new process's /metrics (upstream
        observes it at the end of each reconcile, per namespace and name)."""
        print("== Argo Rollouts: restart", flush=True)

        def reconciled() -> int:
            try:
                return len(self.reconcile_counts())
            except OSError:
                return 0

        figures = phases.restart(
            stop=self.argo.stop,
            start=self.argo.start,
            reconciled=reconciled,
            objects=self.args.rollouts,
            audit=self.audit,
            timeout=max(120.0, self.args.rollouts * 0.3),
        )
        self.result["restart"] = figures

    def reactions(self) -> None:
        args = self.args
        indices = spread(args.reactions, args.rollouts)
        print(f"== Argo Rollouts: reaction, {len(indices)} image changes", flush=True)
        found = []
        for index in indices:
            self.alive()
            namespace, name = namespace_of(index, args.namespaces), rollout_name(index)
            found.append(change_image(self.client, namespace, name, f"{IMAGE}-2"))
        self.result["reaction_seconds"] = figures = phases.reaction_figures(
            [seconds["started"] for seconds in found]
        )
        self.result["reaction_paused_seconds"] = phases.reaction_figures(
            [seconds["paused"] for seconds in found]
        )
        print(
            f"  canary started: p50 {figures['p50'] * 1e3:.0f} ms, "
            f"p99 {figures['p99'] * 1e3:.0f} ms",
            flush=True,
        )
        self.phase_requests("reactions")

    def clear(self) -> None:
        """After the controller stopped: leave the cluster as it was before, so that the
        next controller does not share kube-apiserver, etcd and kwok with 10,000 Rollouts,
        their ReplicaSets, pods and Services (at N = 10,000 those made every Service
        create of ours take 1.7 s at the median, docs/scale.md)."""
        print("== Argo Rollouts: deleting its namespaces", flush=True)
        timeout = max(300.0, self.args.rollouts * 0.3)
        seconds = remove_namespaces(self.client, self.args.namespaces, timeout=timeout)
        self.result["cleared_seconds"] = round(seconds, 1)
        print(f"  gone after {seconds:.1f} s", flush=True)

    def finish(self) -> None:
        self.alive()
        pid = self.argo.pid
        # The kernel folds threads' RSS into VmHWM lazily: it can read below
        # an RSS sampled earlier, so the peak is the larger of the two.
        self.result["rss_mib"]["peak_since_restart"] = mib(rss_kib(pid)["VmHWM"])
        lines = self.argo.log_text().splitlines()
        self.result["controller_log"] = {
            "lines": len(lines),
            "errors": sum("level=error" in line for line in lines),
            "warnings": sum("level=warning" in line for line in lines),
        }
