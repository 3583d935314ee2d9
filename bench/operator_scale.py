"""One real operator process holding a thousand ModelDeployments: time, memory, CPU, API load.

Run with ``make bench-scale`` (or ``python -m bench.operator_scale --objects 1000``).
It starts the full tier (etcd, kube-apiserver with an audit log,
kube-controller-manager, kube-scheduler and kwok, so every revision's pod
really becomes Ready without a container runtime), installs the Gateway API
and modelcanary CRDs, and runs ``python -m modelcanary run`` cluster-wide
exactly as the e2e harness does, under an identity of its own so that its
requests can be told apart in the audit log. Nothing is mocked. The
ModelDeployments have no analysis, so Prometheus is not started: this bench
is about holding many objects, not about judging canaries.

It creates ``--objects`` ModelDeployments spread over ``--namespaces``
namespaces (one replica each, the Gateway API router creating its HTTPRoute
by default), then reports, phase by phase:

    startup          the operator with 0 objects: seconds to its liveness probe,
                     RSS a few seconds later
    to healthy       first create -> every object's status says phase Healthy,
                     polled with one LIST of all ModelDeployments; also first
                     create -> every object has a status (the operator's first
                     pass on each, before Kubernetes made the pods Ready)
    RSS              VmRSS once all are Healthy and after the idle window,
                     VmHWM (the peak) at the end, and the growth per object
    idle CPU         utime+stime of the operator process per minute of the
                     idle window (after ``--settle`` seconds, one idle
                     interval, so no first-revision pass is still in flight);
                     one core fully busy is 60 s/min
    idle passes      reconcile passes per minute (modelcanary_reconcile_seconds
                     on the operator's /metrics); one per object per 30 s is 2N
    API requests     requests the operator made, from the API server's audit
                     log: per phase, and per minute by verb and resource while idle
    reaction         with all N idle: change spec.predictor.model.version of
                     one object -> its status (for the new generation) names a
                     canaryRevision, phase Progressing; ``--reactions`` objects
                     in different namespaces, min / median / max

If not every object is Healthy within ``--healthy-timeout``, the bench
reports how far the ramp got (objects with a status, objects Healthy, the
operator's CPU share meanwhile, the most common status messages), skips the
idle and reaction phases, and exits 1.

The canary steps end in a pause without a duration, so a started canary
stays at 10% and does no further work during the bench. The audit log
(blocking, metadata only) costs the API server a little time per request;
every figure here is taken with it on.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from e2e.dataplane.operator import OperatorProcess
from e2e.dataplane.scenario import CRD_DIR
from e2e.harness import ControlPlane, Tier, find_toolchain

GROUP_PATH = "/apis/modelcanary.io/v1alpha1"
OPERATOR_USER = "modelcanary-bench-operator"
REVISION = re.compile(r"\b[0-9a-f]{10}\b")
IDLE_INTERVAL = 30.0  # the operator's requeue for a Healthy object (rollout.state.IDLE_SECONDS)


# --------------------------------------------------------------------------- the API


class Client:
    """JSON over one kept-alive HTTPS connection per thread, as the cluster's admin."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.host, port = cluster["server"].removeprefix("https://").split(":")
        self.port = int(port)
        self.tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self.tls.load_cert_chain(user["client-certificate"], user["client-key"])
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection: http.client.HTTPSConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.tls, timeout=60
            )
            self._local.connection = connection
        return connection

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
                continue
            return response.status, json.loads(payload or b"null")
        raise AssertionError("unreachable")

    def must(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        code, answer = self.request(method, path, body, content_type or "application/json")
        if code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {code}: {answer}")
        return answer


# --------------------------------------------------------------------------- the process


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak resident set) from /proc, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # fields[0] is the state, field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def reconcile_passes(operator: OperatorProcess) -> float:
    """modelcanary_reconcile_seconds_count from the operator's own /metrics."""
    for line in operator.metrics().splitlines():
        if line.startswith("modelcanary_reconcile_seconds_count"):
            return float(line.split()[-1])
    return 0.0


class AuditTail:
    """The operator's requests in the API server's audit log, read on from where we left off."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.offset = 0

    def take(self) -> Counter[str]:
        """Requests since the last call, counted by "verb resource[/subresource]"."""
        counts: Counter[str] = Counter()
        if not self.path.exists():
            return counts
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") != self.user:
                continue
            ref = event.get("objectRef") or {}
            what = ref.get("resource", event.get("requestURI", "?"))
            if ref.get("subresource"):
                what += "/" + ref["subresource"]
            counts[f"{event.get('verb', '?')} {what}"] += 1
        return counts


# --------------------------------------------------------------------------- objects


def namespace_of(index: int, namespaces: int) -> str:
    return f"scale-{index % namespaces}"


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
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]},
        },
    }


def md_path(namespace: str, name: str = "") -> str:
    return f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments" + (f"/{name}" if name else "")


def list_statuses(client: Client) -> list[dict[str, Any]]:
    answer = client.must("GET", f"{GROUP_PATH}/modeldeployments")
    return [item.get("status") or {} for item in answer["items"]]


def wait_until(check: Callable[[], bool], *, timeout: float, interval: float, what: str) -> float:
    """Poll ``check``; returns the monotonic time at which it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- phases


class NotHealthyError(RuntimeError):
    """Not every ModelDeployment became Healthy in time; the figures so far are reported."""


class Bench:
    def __init__(self, args: argparse.Namespace, plane: ControlPlane, workdir: Path) -> None:
        self.args = args
        self.plane = plane
        self.client = Client(plane.kubeconfig)
        self.audit = AuditTail(plane.audit_log, OPERATOR_USER)
        self.operator = OperatorProcess(
            plane.kubeconfig_for(OPERATOR_USER, ["system:masters"]), None, workdir / "operator"
        )
        self.result: dict[str, Any] = {"objects": args.objects, "namespaces": args.namespaces}
        self.requests: dict[str, int] = {}

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
        print("== startup (0 objects)", flush=True)
        started = time.monotonic()
        self.operator.start()
        ready = time.monotonic() - started
        time.sleep(self.args.startup_settle)
        self.alive()
        rss = rss_kib(self.pid)
        self.rss_start = rss["VmRSS"]
        self.result["startup_seconds"] = round(ready, 2)
        self.result["rss_mib"] = {"startup": mib(rss["VmRSS"])}
        print(f"  liveness after {ready:.2f} s; RSS {mib(rss['VmRSS'])} MiB", flush=True)
        self.phase_requests("startup")

    def create_all(self) -> None:
        args = self.args
        print(f"== {args.objects} ModelDeployments in {args.namespaces} namespaces", flush=True)
        for index in range(args.namespaces):
            self.client.must("POST", "/api/v1/namespaces", {"metadata": {"name": f"scale-{index}"}})

        def create(index: int) -> None:
            namespace = namespace_of(index, args.namespaces)
            body = model_deployment(f"model-{index:04d}", "1.0.0", args.router)
            self.client.must("POST", md_path(namespace), body)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(args.objects)))
        created = time.monotonic()
        print(f"  created in {created - started:.1f} s", flush=True)

        first_pass: float | None = None
        last_print = 0.0
        statuses: list[dict[str, Any]] = []
        progress: list[str] = []
        cpu_before = cpu_seconds(self.pid)

        def all_healthy() -> bool:
            nonlocal first_pass, last_print, statuses
            self.alive()
            statuses = list_statuses(self.client)
            seen = sum(1 for s in statuses if s.get("observedGeneration") is not None)
            phases = Counter(str(s.get("phase", "-")) for s in statuses)
            now = time.monotonic()
            if first_pass is None and seen == args.objects:
                first_pass = now
            if now - last_print >= 10:
                last_print = now
                ready = phases["Healthy"]
                progress.append(f"{now - started:.0f} s: {seen} with status, {ready} Healthy")
                print(
                    f"  {now - started:6.1f} s: {seen} with status, phases {dict(phases)}",
                    flush=True,
                )
            return bool(phases.get("Healthy", 0) == args.objects)

        timeout = args.healthy_timeout or max(180.0, args.objects * 0.6)
        self.result["create_seconds"] = round(created - started, 1)
        self.result["progress"] = progress
        try:
            healthy = wait_until(all_healthy, timeout=timeout, interval=2.0, what="all Healthy")
        except TimeoutError as error:
            self._not_healthy(error, statuses, cpu_before, time.monotonic() - started)
            raise NotHealthyError(str(error)) from None
        self.result["ramp_cpu_seconds"] = round(cpu_seconds(self.pid) - cpu_before, 1)
        first = first_pass if first_pass is not None else healthy
        self.result["first_pass_all_seconds"] = round(first - started, 1)
        self.result["healthy_all_seconds"] = round(healthy - started, 1)
        rss = rss_kib(self.pid)
        self.result["rss_mib"]["healthy"] = mib(rss["VmRSS"])
        per_object = (rss["VmRSS"] - self.rss_start) / args.objects
        self.result["rss_kib_per_object"] = round(per_object, 1)
        print(
            f"  every object had a status after {first - started:.1f} s, "
            f"all Healthy after {healthy - started:.1f} s "
            f"(operator CPU {self.result['ramp_cpu_seconds']} s)",
            flush=True,
        )
        print(
            f"  RSS {mib(rss['VmRSS'])} MiB ({per_object:.1f} KiB per object over startup)",
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
        rss = rss_kib(self.pid)
        self.result["rss_mib"]["at_timeout"] = mib(rss["VmRSS"])
        self.result["not_healthy"] = {
            "waited_seconds": round(waited, 1),
            "with_status": sum(1 for s in statuses if s.get("observedGeneration") is not None),
            "healthy": len(statuses) - len(stuck),
            "operator_cpu_seconds": round(ramp_cpu, 1),
            "operator_cpu_share": round(ramp_cpu / waited, 2),
            "messages": dict(messages.most_common(5)),
        }
        self.phase_requests("create_to_timeout")

    def idle(self) -> None:
        args = self.args
        print(f"== idle: settle {args.settle:.0f} s, then measure {args.idle:.0f} s", flush=True)
        time.sleep(args.settle)
        self.alive()
        self.phase_requests("settle")
        cpu0, passes0, t0 = cpu_seconds(self.pid), reconcile_passes(self.operator), time.monotonic()
        time.sleep(args.idle)
        self.alive()
        cpu1, passes1, t1 = cpu_seconds(self.pid), reconcile_passes(self.operator), time.monotonic()
        minutes = (t1 - t0) / 60
        counts = self.phase_requests("idle")
        rss = rss_kib(self.pid)
        self.result["rss_mib"]["after_idle"] = mib(rss["VmRSS"])
        by_kind = {kind: round(count / minutes, 1) for kind, count in counts.most_common()}
        idle: dict[str, Any] = {
            "seconds": round(t1 - t0, 1),
            "cpu_seconds_per_minute": round((cpu1 - cpu0) / minutes, 2),
            "passes_per_minute": round((passes1 - passes0) / minutes, 1),
            "api_requests_per_minute": round(sum(counts.values()) / minutes, 1),
            "api_requests_per_minute_by_kind": by_kind,
        }
        self.result["idle"] = idle
        print(
            f"  CPU {idle['cpu_seconds_per_minute']} s/min, "
            f"{idle['passes_per_minute']} passes/min, "
            f"{idle['api_requests_per_minute']} API requests/min; RSS {mib(rss['VmRSS'])} MiB",
            flush=True,
        )
        for kind, rate in by_kind.items():
            print(f"    {rate:8.1f}/min  {kind}", flush=True)

    def react_once(self, index: int, version: str) -> float:
        namespace, name = namespace_of(index, self.args.namespaces), f"model-{index:04d}"
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
        args = self.args
        print(f"== reaction: {args.reactions} predictor changes, one at a time", flush=True)
        times = []
        for run in range(args.reactions):
            # Spread over the list, and so over the namespaces.
            index = (run * (args.objects // args.reactions) + run) % args.objects
            self.alive()
            seconds = self.react_once(index, "2.0.0")
            times.append(seconds)
            print(f"  model-{index:04d}: {seconds * 1e3:.0f} ms", flush=True)
        self.result["reaction_seconds"] = {
            "runs": [round(t, 3) for t in times],
            "min": round(min(times), 3),
            "median": round(statistics.median(times), 3),
            "max": round(max(times), 3),
        }
        self.phase_requests("reactions")

    def finish(self) -> None:
        self.alive()
        rss = rss_kib(self.pid)
        self.result["rss_mib"]["peak"] = mib(rss["VmHWM"])
        self.result["operator_cpu_seconds_total"] = round(cpu_seconds(self.pid), 1)
        self.result["api_requests"] = self.requests
        log = self.operator.log_text()
        self.result["operator_log"] = {
            "lines": log.count("\n"),
            "errors": sum(" ERROR " in line for line in log.splitlines()),
            "warnings": sum(" WARNING " in line for line in log.splitlines()),
            "tracebacks": log.count("Traceback"),
        }
        print(f"== peak RSS (VmHWM) {mib(rss['VmHWM'])} MiB", flush=True)


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="modelcanary-bench-scale-") as scratch:
        yield Path(scratch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--router", choices=("gatewayAPI", "replicas"), default="gatewayAPI")
    parser.add_argument("--idle", type=float, default=120.0, help="seconds of idle measured")
    parser.add_argument(
        "--settle", type=float, default=IDLE_INTERVAL, help="seconds between Healthy and idle"
    )
    parser.add_argument("--startup-settle", type=float, default=5.0)
    parser.add_argument("--reactions", type=int, default=5)
    parser.add_argument("--healthy-timeout", type=float, default=0.0, help="0: 0.6 s per object")
    parser.add_argument("--workdir", type=Path, help="keep the logs here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    wall = time.monotonic()
    code = 0
    with workspace(args.workdir) as workdir:
        plane = ControlPlane(find_toolchain(), workdir / "control-plane", audit=True)
        bench: Bench | None = None
        try:
            plane.start(Tier.FULL)
            plane.install_gateway_api()
            plane.install_crds(sorted(CRD_DIR.glob("*.yaml")))
            print(f"control plane up in {time.monotonic() - wall:.1f} s", flush=True)
            bench = Bench(args, plane, workdir)
            bench.result["router"] = args.router
            bench.startup()
            try:
                bench.create_all()
                bench.idle()
                bench.reactions()
            except NotHealthyError:
                code = 1
            bench.finish()
        finally:
            if bench is not None:
                bench.operator.stop()
            plane.stop()
        result = bench.result
    result["bench_wall_seconds"] = round(time.monotonic() - wall, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
