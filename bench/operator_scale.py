"""Our operator's side of the scale report: one real process holding N ModelDeployments.

``bench.scale_report`` (``make bench-scale``) runs these phases on the full
tier (kwok plays the kubelet, so every revision's pod really becomes Ready),
under an identity of the operator's own so that its requests can be told
apart in the audit log. Nothing is mocked. The objects have no analysis
(``bench.scale_canaries`` adds it to some of them at the end):

    startup      the operator with 0 objects: seconds to its liveness probe
    to healthy   first create -> every object's status says phase Healthy,
                 polled with one LIST of all ModelDeployments; also first
                 create -> every object has a status (the first pass on each)
    rest         after ``--settle`` s: the operator's CPU (utime+stime per
                 second of wall time, in cores), passes per minute
                 (modelcanary_reconcile_seconds_count on its /metrics) and
                 API requests per minute (audit log) over ``--rest`` s, RSS
                 at its end
    reaction     with all N at rest: spec.predictor.model.version of one
                 object changed -> its status (for the new generation) names
                 a canaryRevision, phase Progressing; ``--reactions`` objects
                 spread over the namespaces, one at a time; p50 and p99
    restart      the process stopped (SIGTERM) and started again -> every
                 object reconciled again, i.e. every object has its
                 ``modelcanary_phase`` series on the new process's /metrics
                 (set by each pass, and only by a pass, from its decision);
                 peak API requests in one second meanwhile (audit log)

If not every object is Healthy within ``--healthy-timeout``, the figures of
the ramp are recorded (objects with a status, objects Healthy, the operator's
CPU share, the most common status messages) and the later phases are skipped.

The canary steps end in a pause without a duration, so a started canary stays
at 10% and does no further work.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import phases, promtext
from bench.audit import AuditTail
from bench.kube import Census, Client, cpu_seconds, mib, rss_kib, spread, wait_until
from bench.phases import NotHealthyError
from e2e.dataplane.operator import OperatorProcess
from e2e.harness import ControlPlane

GROUP_PATH = "/apis/modelcanary.io/v1alpha1"
OPERATOR_USER = "modelcanary-bench-operator"
REVISION = re.compile(r"\b[0-9a-f]{10}\b")
STEPS: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]


# --------------------------------------------------------------------------- objects


def namespace_of(index: int, namespaces: int) -> str:
    return f"scale-{index % namespaces}"


def md_name(index: int) -> str:
    return f"model-{index:04d}"


def model_deployment(name: str, version: str, router: str) -> dict[str, Any]:
    traffic: dict[str, Any] = (
        {"gatewayAPI": {"httpRoute": name, "create": True, "parentRefs": [{"name": "gateway"}]}}
        if router == "gatewayAPI"
        else {"replicas": {}}
    )
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {"name": name, "version": version, "uri": f"s3://models/{name}/{version}"},
                "replicas": 1,
                "template": {
                    "spec": {"containers": [{"name": "server", "image": "model-server:bench"}]}
                },
            },
            "traffic": {"port": 8080, **traffic},
            # A canary stops at 10% in a pause without end: no work after it started.
            "strategy": {"steps": STEPS},
        },
    }


def md_path(namespace: str | None = None, name: str = "") -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{GROUP_PATH}{where}/modeldeployments" + (f"/{name}" if name else "")


def status_summary(item: dict[str, Any]) -> dict[str, Any]:
    """What the ramp reads of a ModelDeployment: its phase, message and observedGeneration."""
    status = item.get("status") or {}
    return {key: status.get(key) for key in ("phase", "message", "observedGeneration")}


GC_PAUSE = "modelcanary_gc_pause_seconds"


def gc_figures(text: str) -> dict[str, float]:
    """From a /metrics page: the process's full collections so far, how many and their
    pauses in all, and the young collections' pauses in all (seconds)."""
    counts = {
        labels.get("generation"): v for labels, v in promtext.samples(text, f"{GC_PAUSE}_count")
    }
    sums = {labels.get("generation"): v for labels, v in promtext.samples(text, f"{GC_PAUSE}_sum")}
    return {
        "full_collections": counts.get("2", 0.0),
        "full_pause_seconds": round(sums.get("2", 0.0), 3),
        "young_pause_seconds": round(sums.get("0", 0.0) + sums.get("1", 0.0), 3),
    }


def reconcile_passes(operator: OperatorProcess) -> float:
    """modelcanary_reconcile_seconds_count from the operator's own /metrics."""
    for line in operator.metrics().splitlines():
        if line.startswith("modelcanary_reconcile_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def reaction_indices(args: argparse.Namespace) -> list[int]:
    return spread(args.reactions, args.objects)


# --------------------------------------------------------------------------- phases


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        plane: ControlPlane,
        workdir: Path,
        *,
        extra_args: list[str] | None = None,
    ) -> None:
        self.args = args
        self.plane = plane
        self.client = Client(plane.kubeconfig)
        self.audit = AuditTail(plane.audit_log, OPERATOR_USER)
        self.operator = OperatorProcess(
            plane.kubeconfig_for(OPERATOR_USER, ["system:masters"]),
            None,
            workdir,
            extra_args=extra_args or [],
        )
        self.result: dict[str, Any] = {"objects": args.objects, "namespaces": args.namespaces}
        self.requests: dict[str, int] = {}
        self.rss_start = 0

    @property
    def pid(self) -> int:
        assert self.operator.process is not None
        return self.operator.process.pid

    def alive(self) -> None:
        if not self.operator.is_running():
            raise RuntimeError(
                "the operator process exited; log tail:\n" + self.operator.log_text()[-4000:]
            )

    def phase_requests(self, phase: str) -> Counter[str]:
        counts = self.audit.take()
        self.requests[phase] = sum(counts.values())
        print(f"  operator API requests: {self.requests[phase]}", flush=True)
        return counts

    def startup(self) -> None:
        print("== modelcanary: startup (0 objects)", flush=True)
        started = time.monotonic()
        self.operator.start()
        ready = time.monotonic() - started
        time.sleep(self.args.startup_settle)
        self.alive()
        self.rss_start = rss_kib(self.pid)["VmRSS"]
        self.result["startup_seconds"] = round(ready, 2)
        self.result["rss_mib"] = {"startup": mib(self.rss_start)}
        print(f"  liveness after {ready:.2f} s; RSS {mib(self.rss_start)} MiB", flush=True)
        self.phase_requests("startup")

    def create_all(self) -> None:
        args = self.args
        print(f"== modelcanary: {args.objects} objects in {args.namespaces} namespaces", flush=True)
        for index in range(args.namespaces):
            self.client.must("POST", "/api/v1/namespaces", {"metadata": {"name": f"scale-{index}"}})

        def create(index: int) -> None:
            body = model_deployment(md_name(index), "1.0.0", args.router)
            self.client.must("POST", md_path(namespace_of(index, args.namespaces)), body)

        # A watch, not a LIST a second (see bench.kube.Census), from before the first create.
        with Census(self.client, md_path(), status_summary) as census:
            cpu_before = cpu_seconds(self.pid)
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(create, range(args.objects)))
            created = time.monotonic()
            print(f"  created in {created - started:.1f} s", flush=True)

            first_pass: float | None = None
            last_print = 0.0
            statuses: list[dict[str, Any]] = []

            def all_healthy() -> bool:
                nonlocal first_pass, last_print, statuses
                self.alive()
                statuses = census.values()
                seen = sum(1 for s in statuses if s.get("observedGeneration") is not None)
                phases_now = Counter(str(s.get("phase") or "-") for s in statuses)
                now = time.monotonic()
                if first_pass is None and seen == args.objects:
                    first_pass = now
                if now - last_print >= 10:
                    last_print = now
                    print(
                        f"  {now - started:6.1f} s: {seen} with status, {dict(phases_now)}",
                        flush=True,
                    )
                return bool(phases_now.get("Healthy", 0) == args.objects)

            timeout = args.healthy_timeout or max(180.0, args.objects * 0.6)
            self.result["create_seconds"] = round(created - started, 1)
            try:
                healthy = wait_until(all_healthy, timeout=timeout, interval=0.2, what="all Healthy")
            except TimeoutError as error:
                self._not_healthy(error, statuses, cpu_before, time.monotonic() - started)
                raise NotHealthyError(str(error)) from None
        self.result["ramp_cpu_seconds"] = round(cpu_seconds(self.pid) - cpu_before, 1)
        first = first_pass if first_pass is not None else healthy
        self.result["first_pass_all_seconds"] = round(first - started, 1)
        self.result["healthy_all_seconds"] = round(healthy - started, 1)
        rss = rss_kib(self.pid)["VmRSS"]
        self.result["rss_mib"]["healthy"] = mib(rss)
        self.result["gc"] = {"ramp": self.gc_pauses()}
        self.result["rss_kib_per_object"] = round((rss - self.rss_start) / args.objects, 1)
        print(
            f"  every object had a status after {first - started:.1f} s, all Healthy after "
            f"{healthy - started:.1f} s (CPU {self.result['ramp_cpu_seconds']} s); "
            f"RSS {mib(rss)} MiB",
            flush=True,
        )
        self.phase_requests("create_to_healthy")

    def _not_healthy(
        self, error: TimeoutError, statuses: list[dict[str, Any]], cpu_before: float, waited: float
    ) -> None:
        """Record what the ramp reached, so that a timeout still reports figures."""
        stuck = [s for s in statuses if s.get("phase") != "Healthy"]
        # The revision in a message is a hash: without it, alike messages count as one.
        messages = Counter(
            REVISION.sub("<revision>", f"{s.get('phase')}: {s.get('message')}") for s in stuck
        )
        print(f"  {error}; not Healthy: {len(stuck)}; most common:", flush=True)
        for message, count in messages.most_common(5):
            print(f"    {count} x {message}", flush=True)
        ramp_cpu = cpu_seconds(self.pid) - cpu_before
        self.result["rss_mib"]["at_timeout"] = mib(rss_kib(self.pid)["VmRSS"])
        self.result["not_healthy"] = {
            "waited_seconds": round(waited, 1),
            "with_status": sum(1 for s in statuses if s.get("observedGeneration") is not None),
            "healthy": len(statuses) - len(stuck),
            "operator_cpu_share": round(ramp_cpu / waited, 2),
            "messages": dict(messages.most_common(5)),
        }
        self.phase_requests("create_to_timeout")

    def rest(self) -> None:
        args = self.args
        print(f"== modelcanary: settle {args.settle:.0f} s, rest {args.rest:.0f} s", flush=True)
        time.sleep(args.settle)
        self.alive()
        self.phase_requests("settle")
        rest = phases.rest(
            self.pid,
            self.audit,
            args.rest,
            passes=lambda: reconcile_passes(self.operator),
            alive=self.alive,
        )
        self.requests["rest"] = round(rest["api_requests_per_minute"] * rest["seconds"] / 60)
        self.result["rest"] = rest
        self.result["rss_mib"]["after_rest"] = rest["rss_mib"]
        print(
            f"  CPU {rest['cpu_cores']} cores, {rest['passes_per_minute']} passes/min, "
            f"{rest['api_requests_per_minute']} API requests/min; RSS {rest['rss_mib']} MiB",
            flush=True,
        )
        for kind, rate in rest["api_requests_per_minute_by_kind"].items():
            print(f"    {rate:8.1f}/min  {kind}", flush=True)

    def react_once(self, index: int, version: str) -> float:
        namespace, name = namespace_of(index, self.args.namespaces), md_name(index)
        path = md_path(namespace, name)
        before = self.client.must("GET", path)
        stable = (before.get("status") or {}).get("stableRevision")
        patch = {"spec": {"predictor": {"model": {"version": version}}}}
        started = time.monotonic()
        after = self.client.must("PATCH", path, patch, "application/merge-patch+json")
        generation = after["metadata"]["generation"]

        def started_canary() -> bool:
            status = self.client.must("GET", path).get("status") or {}
            return (
                (status.get("observedGeneration") or 0) >= generation
                and status.get("canaryRevision") not in (None, stable)
                and status.get("phase") == "Progressing"
            )

        seen = wait_until(started_canary, timeout=60, interval=0.02, what=f"{name}'s canary")
        return seen - started

    def reactions(self) -> None:
        indices = reaction_indices(self.args)
        print(f"== modelcanary: reaction, {len(indices)} predictor changes", flush=True)
        times = []
        for index in indices:
            self.alive()
            times.append(self.react_once(index, "2.0.0"))
        self.result["reaction_seconds"] = figures = phases.reaction_figures(times)
        print(f"  p50 {figures['p50'] * 1e3:.0f} ms, p99 {figures['p99'] * 1e3:.0f} ms", flush=True)
        self.phase_requests("reactions")

    def reconciled(self) -> int:
        """Objects the (new) process has passed at least once: its modelcanary_phase series,
        one per object whatever its phase (that family alone: the poll runs every half
        second while the restart is timed). The reaction phase leaves 50 objects paused
        mid-canary, so counting only Healthy ones never reaches N."""
        try:
            text = self.operator.metrics(names=["modelcanary_phase"])
        except OSError:
            return 0
        return len(promtext.series_objects(text, "modelcanary_phase"))

    def gc_pauses(self) -> dict[str, float] | None:
        """The process's collections since it started (its startup and the ramp, or the
        restart); None from an operator without the figure."""
        names = [f"{GC_PAUSE}_count", f"{GC_PAUSE}_sum"]
        try:
            text = self.operator.metrics(names=names)
        except OSError:
            return None
        return gc_figures(text) if GC_PAUSE in text else None

    def restart(self) -> None:
        print("== modelcanary: restart", flush=True)
        figures = phases.restart(
            stop=self.operator.stop,
            start=self.operator.start,
            reconciled=self.reconciled,
            objects=self.args.objects,
            audit=self.audit,
            timeout=max(120.0, self.args.objects * 0.3),
        )
        self.result["restart"] = figures
        self.result.setdefault("gc", {})["restart"] = self.gc_pauses()

    def finish(self) -> None:
        self.alive()
        rss = rss_kib(self.pid)
        self.result["rss_mib"]["peak_since_restart"] = mib(rss["VmHWM"])
        self.result["api_requests"] = self.requests
        log = self.operator.log_text()
        self.result["operator_log"] = {
            "lines": log.count("\n"),
            "errors": sum(" ERROR " in line for line in log.splitlines()),
            "warnings": sum(" WARNING " in line for line in log.splitlines()),
            "tracebacks": log.count("Traceback"),
        }
