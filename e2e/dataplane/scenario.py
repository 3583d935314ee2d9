"""A whole canary world on the full tier: operator, nginx, model servers, load, Prometheus.

The end-to-end tests and ``make demo`` both stand on this. It wires the real
parts together the way a cluster would: the operator (a process) writes an
HTTPRoute; the route sync renders its weights into real nginx; real model
servers answer for each revision the operator deploys; a load generator
sends steady traffic through nginx; Prometheus scrapes the servers with
``namespace`` and ``revision`` labels; the operator's analysis queries that
Prometheus. A bad candidate therefore produces real bad metrics.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import kr8s
from kr8s.objects import new_class

from e2e.dataplane.gateway import HTTPRouteSync, NginxGateway, ServiceRegistry
from e2e.dataplane.loadgen import LoadGenerator
from e2e.dataplane.operator import OperatorProcess
from e2e.dataplane.revisions import FaultsFor, RevisionServers
from e2e.harness.kubernetes import ControlPlane, wait_for
from e2e.harness.prometheus import PrometheusServer, ScrapeTarget

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)
CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
WINDOW = "10s"


_SELECTOR = 'namespace="{{namespace}}",revision="{{revision}}"'


def _query(template: str) -> str:
    return template.replace("SELECTOR", _SELECTOR).replace("WINDOW", WINDOW)


# Count metrics: each revision's raw counters, which the sequential judge turns
# into requests per interval and compares with stable's. Every series the model
# server exports carries a segment label, the slice.
FAILED = _query('sum by (segment) (model_requests_total{SELECTOR,code=~"5.."})')
TOTAL = _query("sum by (segment) (model_requests_total{SELECTOR})")
LATENCY_BUCKETS = _query("sum by (le) (model_request_duration_seconds_bucket{SELECTOR})")
SCORE_BUCKETS = _query("sum by (le) (model_prediction_score_bucket{SELECTOR})")
SLICE = {"label": "segment", "max": 3}


def count_metrics(*, sliced_errors: bool = True) -> list[dict[str, Any]]:
    """What a careful user writes: errors (per segment), latency within 10%, and the
    score distribution, all judged against stable with no bounds to tune."""
    errors: dict[str, Any] = {"name": "errors", "errors": {"failed": FAILED, "total": TOTAL}}
    if sliced_errors:
        errors["slice"] = SLICE
    else:
        errors["errors"] = {
            "failed": _query('sum(model_requests_total{SELECTOR,code=~"5.."})'),
            "total": _query("sum(model_requests_total{SELECTOR})"),
        }
    return [
        errors,
        {"name": "latency", "latency": {"buckets": LATENCY_BUCKETS, "tolerance": 0.1}},
        {"name": "scores", "distribution": {"buckets": SCORE_BUCKETS}},
    ]


def default_metrics() -> list[dict[str, Any]]:
    """The count metrics, and an absolute ceiling on the error rate. The ceiling guards
    the bake: at 100% stable serves nothing, so the count metrics, which compare the
    two revisions, keep the verdict of their last comparison."""
    return [*count_metrics(), {"name": "error-ceiling", "query": ERROR_RATE, "max": 0.05}]


# Threshold metrics, as the e2e world used them before the sequential judge: one
# scalar per revision over a window, against bounds. They stay for the tests of
# threshold semantics and the report's panels.
# "or vector(0)": a revision that never failed has no 5xx series at all, and
# an empty numerator must read as 0% errors, not as no data.
ERROR_RATE = _query(
    '(sum(rate(model_requests_total{SELECTOR,code=~"5.."}[WINDOW])) or vector(0))'
    " / sum(rate(model_requests_total{SELECTOR}[WINDOW]))"
)
P99_LATENCY = _query(
    "histogram_quantile(0.99, sum by (le) "
    "(rate(model_request_duration_seconds_bucket{SELECTOR}[WINDOW])))"
)
MEAN_SCORE = _query(
    "sum(rate(model_prediction_score_sum{SELECTOR}[WINDOW]))"
    " / sum(rate(model_prediction_score_count{SELECTOR}[WINDOW]))"
)
SAMPLES = _query("sum(increase(model_requests_total{SELECTOR}[WINDOW]))")


def threshold_metrics() -> list[dict[str, Any]]:
    """Bounds widened enough for a scalar over a short window to stay inside them
    on a healthy candidate: what the sequential judge makes unnecessary."""
    return [
        {"name": "error-rate", "query": ERROR_RATE, "max": 0.05},
        {"name": "p99-latency", "query": P99_LATENCY, "max": 1.0, "maxRelativeToStable": 2.0},
        {
            "name": "mean-score",
            "query": MEAN_SCORE,
            "minRelativeToStable": 0.7,
            "maxRelativeToStable": 1.4,
        },
    ]


THRESHOLD_PADDING = {"added_latency_seconds": 0.03}
"""A service time that drowns the machine's scheduling jitter, which the threshold
metrics' relative p99 bound needs (the count metrics do not): pass it as the
scenario's ``base_faults`` when a test uses :func:`threshold_metrics`."""


def model_deployment(
    name: str,
    version: str,
    prometheus_url: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    bake: str = "6s",
    interval: str = "2s",
    min_samples: int = 50,
    metrics: list[dict[str, Any]] | None = None,
    progress_deadline: str | None = None,
    scale_down_delay: str | None = None,
    **spec_overrides: Any,
) -> dict[str, Any]:
    """A ModelDeployment for the e2e world: short steps, a 2 s analysis interval, and
    the count metrics unless ``metrics`` says otherwise. ``progress_deadline`` and
    ``scale_down_delay`` set those strategy fields (the API's defaults when None)."""
    spec: dict[str, Any] = {
        "predictor": {
            "model": {"name": "fraud", "version": version, "uri": f"s3://models/fraud/{version}"},
            "replicas": 1,
            "template": {"spec": {"containers": [{"name": "server", "image": "model-server:e2e"}]}},
        },
        "traffic": {
            "port": 8080,
            "gatewayAPI": {"httpRoute": name, "create": True, "parentRefs": [{"name": "gateway"}]},
        },
        "strategy": {
            "steps": steps
            or [
                {"setWeight": 10},
                {"pause": {"duration": "6s"}},
                {"setWeight": 50},
                {"pause": {"duration": "6s"}},
                {"setWeight": 100},
            ],
            "bake": {"duration": bake},
            **({"progressDeadline": progress_deadline} if progress_deadline else {}),
            **({"scaleDownDelay": scale_down_delay} if scale_down_delay else {}),
        },
        "analysis": {
            "interval": interval,
            "prometheus": {"address": prometheus_url, "timeout": "3s"},
            "failureLimit": 0,
            "noData": "hold",
            "outage": {"holdFor": "5m", "then": "pause"},
            "minSamples": {"query": SAMPLES, "value": min_samples},
            "metrics": metrics if metrics is not None else default_metrics(),
        },
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def healthy_on(version: str) -> Callable[[dict[str, Any]], bool]:
    """A status predicate: ``version`` is stable, known-good, and no canary runs."""

    def check(status: dict[str, Any]) -> bool:
        known = status.get("lastKnownGood") or {}
        return (
            status.get("phase") == "Healthy"
            and status.get("canaryRevision") is None
            and known.get("model", {}).get("version") == version
        )

    return check


class CanaryScenario:
    def __init__(
        self,
        plane: ControlPlane,
        api: kr8s.Api,
        namespace: str,
        prometheus: PrometheusServer,
        workdir: Path,
        *,
        name: str = "fraud-detector",
        faults_for: FaultsFor | None = None,
        rps: float = 100.0,
        operator_kubeconfig: Path | None = None,
        operator_clusterwide: bool = False,
        base_faults: Mapping[str, Any] | None = None,
        metrics: list[dict[str, Any]] | None = None,
    ) -> None:
        self.plane = plane
        self.api = api
        self.namespace = namespace
        self.prometheus = prometheus
        self.workdir = workdir
        self.name = name
        self.faults_for: FaultsFor = faults_for or (lambda version: {})
        self.base_faults: Mapping[str, Any] = base_faults or {}
        self.metrics = metrics
        """The analysis metrics of :meth:`manifest`; None for :func:`default_metrics`."""
        """What every revision does, healthy or not (e.g. :data:`THRESHOLD_PADDING`)."""
        self.rps = rps
        self.registry = ServiceRegistry()
        self.gateway = NginxGateway(workdir / "nginx")
        self.route_sync: HTTPRouteSync | None = None
        self.servers: RevisionServers | None = None
        self.load: LoadGenerator | None = None
        # Another identity than the admin's (e.g. the chart's ServiceAccount) to
        # prove the operator works with exactly that identity's rights.
        self.operator = OperatorProcess(
            operator_kubeconfig or plane.kubeconfig,
            None if operator_clusterwide else namespace,
            workdir / "operator",
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> CanaryScenario:
        self.plane.install_gateway_api()
        self.plane.install_crds(sorted(CRD_DIR.glob("*.yaml")))
        self.gateway.start()
        self.route_sync = HTTPRouteSync(
            self.api, self.namespace, self.name, self.gateway, self.registry
        ).start()
        self.servers = RevisionServers(
            self.api,
            self.namespace,
            self.name,
            workdir=self.workdir / "servers",
            registry=self.registry,
            prometheus=self.prometheus,
            faults_for=self._faults,
        ).start()
        self.load = LoadGenerator(self.gateway.url, self.rps, concurrency=16).start()
        self.operator.start()
        return self

    def scrape_operator(self) -> None:
        """Let Prometheus scrape the operator's own metrics, as a ServiceMonitor would.

        ``modelcanary report`` and the demo read the rollout's timeline from them.
        Call again after restarting the operator: its metrics port changes.
        """
        target = ScrapeTarget(
            f"modelcanary-operator-{self.namespace}",
            f"127.0.0.1:{self.operator.metrics_port}",
            {"job_role": "modelcanary-operator"},
        )
        self.prometheus.add_target(target)
        self.prometheus.wait_until_scraped(target.address)

    def _faults(self, version: str) -> Mapping[str, Any]:
        # Looked up late, so a test may change faults_for after start().
        return {**self.base_faults, **self.faults_for(version)}

    def stop(self) -> None:
        for part in (self.operator, self.load, self.servers, self.route_sync):
            if part is not None:
                part.stop()
        self.gateway.stop()

    def __enter__(self) -> CanaryScenario:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the ModelDeployment -----------------------------------------------------------

    def manifest(self, version: str, **overrides: Any) -> dict[str, Any]:
        overrides.setdefault("metrics", self.metrics)
        return model_deployment(self.name, version, self.prometheus.url, **overrides)

    def apply(self, manifest: Mapping[str, Any]) -> None:
        body = copy.deepcopy(dict(manifest))
        body["metadata"] = {**body["metadata"], "namespace": self.namespace}
        existing = self.get()
        if existing is None:
            ModelDeployment(body, api=self.api).create()
        else:
            existing.patch({"spec": body["spec"]}, type="merge")

    def get(self) -> Any:
        try:
            return ModelDeployment.get(self.name, namespace=self.namespace, api=self.api)
        except kr8s.NotFoundError:
            return None

    def status(self) -> dict[str, Any]:
        found = self.get()
        return dict(found.raw.get("status") or {}) if found is not None else {}

    def act(self, action: str, action_id: str) -> None:
        """A manual action, the way the CLI asks for one."""
        found = self.get()
        assert found is not None
        found.patch(
            {
                "metadata": {
                    "annotations": {
                        "modelcanary.io/action": action,
                        "modelcanary.io/action-id": action_id,
                    }
                }
            },
            type="merge",
        )

    def wait_for_status(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float, what: str
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}
        unreachable: list[str] = []

        def check() -> bool:
            nonlocal last
            try:
                last = self.status()
            except (kr8s.ServerError, httpx.TransportError) as error:
                # The API server restarting (429 while it starts, 5xx, refused): the
                # status is unknown for now, not wrong; a later read decides.
                unreachable.append(repr(error)[:200])
                return False
            return predicate(last)

        try:
            wait_for(check, timeout=timeout, interval=0.25, what=what)
        except TimeoutError as error:
            unread = ""
            if unreachable:
                unread = f"; {len(unreachable)} reads failed, last: {unreachable[-1]}"
            # The judge's state and verdicts: the operator's log does not record them,
            # and the status goes with the test's namespace.
            judged = {key: last.get(key) for key in ("analysis", "lastKnownGood", "history")}
            raise TimeoutError(
                f"{error}{unread}; last status: phase={last.get('phase')}"
                f" message={last.get('message')}\n"
                f"analysis, lastKnownGood, history: {json.dumps(judged, default=str)[:6000]}\n"
                f"operator log tail:\n{self.operator.log_text()[-3000:]}"
            ) from None
        return last

    def two_promoted(self, first: str, second: str, **overrides: Any) -> tuple[str, str]:
        """``first`` serving, then ``second`` promoted through one quick 50% step.

        Returns (the previous revision, the stable one): the world a rollback
        drill needs, with a known-good revision that is not the one serving. The
        previous revision is cold (scaleDownDelay 0s unless ``overrides`` say
        otherwise), as a drill long after the promotion finds it.
        """
        overrides.setdefault("scale_down_delay", "0s")
        self.apply(self.manifest(first, **overrides))
        previous = self.wait_for_status(
            lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") is not None,
            timeout=90,
            what=f"{first} serving",
        )["stableRevision"]
        quick = {"steps": [{"setWeight": 50}, {"setWeight": 100}], "bake": "2s"}
        self.apply(self.manifest(second, **{**quick, **overrides}))
        status = self.wait_for_status(
            lambda s: (
                s.get("phase") == "Healthy"
                and s.get("stableRevision") not in (None, previous)
                and s.get("canaryRevision") is None
            ),
            timeout=120,
            what=f"{second} promoted",
        )
        stable = str(status["stableRevision"])
        assert self.route_sync is not None
        self.route_sync.wait_until_applied({self.revision_service(stable): 100}, timeout=30)
        assert self.servers is not None
        servers = self.servers
        wait_for(lambda: servers.running() == {stable}, timeout=30, what="the old revision down")
        return str(previous), stable

    def revision_service(self, revision: str) -> str:
        return f"{self.name}-{revision}"
