"""Shared API fixtures: a valid ModelDeployment and a table of invalid ones.

The same table runs against the pydantic models (unit) and against the real
API server with the generated CRD installed (integration), so the two can
never disagree about what is invalid, or about which field is to blame.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Manifest = dict[str, Any]


def valid_model_deployment(name: str = "fraud-detector") -> Manifest:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {"name": "fraud", "version": "1.5.0", "uri": "s3://models/fraud/1.5.0"},
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
            },
            "traffic": {"port": 8080, "gatewayAPI": {"httpRoute": "fraud-detector"}},
            "strategy": {
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "1m"}},
                    {"setWeight": 50},
                    {"pause": {}},
                    {"setWeight": 100},
                ],
                "bake": {"duration": "10m"},
            },
            "analysis": {
                "interval": "15s",
                "prometheus": {"address": "http://prometheus.monitoring:9090"},
                "failureLimit": 1,
                "noData": "hold",
                "outage": {"holdFor": "5m", "then": "rollback"},
                "minSamples": {"query": "sum(model_requests_total)", "value": 50},
                "alpha": 0.01,
                "metrics": [
                    {"name": "error-rate", "query": "sum(errors)", "max": 0.01},
                    {"name": "latency", "query": "p99", "max": 0.25, "maxRelativeToStable": 1.5},
                    {
                        "name": "errors",
                        "errors": {
                            "failed": 'sum(requests_total{revision="{{revision}}",code="500"})',
                            "total": 'sum(requests_total{revision="{{revision}}"})',
                        },
                        "slice": {"label": "segment", "max": 5},
                    },
                    {
                        "name": "slower",
                        "latency": {
                            "buckets": 'sum by (le) (duration_bucket{revision="{{revision}}"})',
                            "tolerance": 0.2,
                        },
                    },
                    {
                        "name": "scores",
                        "distribution": {
                            "buckets": 'sum by (le) (score_bucket{revision="{{revision}}"})'
                        },
                    },
                ],
            },
            "drill": {"schedule": "0 3 * * 1", "mode": "verify"},
        },
    }


@dataclass(frozen=True)
class InvalidCase:
    id: str
    mutate: Callable[[Manifest], None]
    field: str
    """The field the refusal must name (as kubectl prints it)."""


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        node: Any = manifest
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _autoscaled_replicas_router(manifest: Manifest) -> None:
    """The replicas router sets replica counts, which an autoscaler would undo."""
    traffic = manifest["spec"]["traffic"]
    del traffic["gatewayAPI"]
    traffic["replicas"] = {}
    manifest["spec"]["predictor"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 4}


S = "spec"


def _both(*mutations: Callable[[Manifest], None]) -> Callable[[Manifest], None]:
    def mutate(manifest: Manifest) -> None:
        for one in mutations:
            one(manifest)

    return mutate


INVALID_MODEL_DEPLOYMENTS = [
    InvalidCase(
        "no-data-limit-without-no-data-hold",
        _both(
            _set("spec.analysis.noData", "fail"),
            _set("spec.analysis.noDataLimit", {"holdFor": "10m"}),
        ),
        "spec.analysis.noDataLimit",
    ),
    InvalidCase(
        "no-data-limit-that-holds-forever",
        _set("spec.analysis.noDataLimit", {"holdFor": "10m", "then": "hold"}),
        "spec.analysis.noDataLimit.then",
    ),
    InvalidCase(
        "no-data-limit-without-hold-for",
        _set("spec.analysis.noDataLimit", {"then": "pause"}),
        "spec.analysis.noDataLimit.holdFor",
    ),
    InvalidCase(
        "query-error-that-passes",
        _set("spec.analysis.queryError", {"then": "pass"}),
        "spec.analysis.queryError.then",
    ),
    InvalidCase(
        "query-error-hold-for-not-a-duration",
        _set("spec.analysis.queryError", {"holdFor": "soon"}),
        "spec.analysis.queryError.holdFor",
    ),
    InvalidCase(
        "weight-101",
        _set("spec.strategy.steps.0.setWeight", 101),
        "spec.strategy.steps[0].setWeight",
    ),
    InvalidCase(
        "negative-weight",
        _set("spec.strategy.steps.0.setWeight", -5),
        "spec.strategy.steps[0].setWeight",
    ),
    InvalidCase(
        "decreasing-weights",
        _set("spec.strategy.steps", [{"setWeight": 50}, {"setWeight": 10}, {"setWeight": 100}]),
        "spec.strategy.steps",
    ),
    InvalidCase("no-steps", _set("spec.strategy.steps", []), "spec.strategy.steps"),
    InvalidCase(
        "last-weight-not-100",
        _set("spec.strategy.steps", [{"setWeight": 10}, {"setWeight": 50}]),
        "spec.strategy.steps",
    ),
    InvalidCase(
        "only-pauses",
        _set("spec.strategy.steps", [{"pause": {"duration": "1m"}}]),
        "spec.strategy.steps",
    ),
    InvalidCase(
        "step-with-weight-and-pause",
        _set("spec.strategy.steps.0", {"setWeight": 10, "pause": {}}),
        "spec.strategy.steps[0]",
    ),
    InvalidCase("empty-step", _set("spec.strategy.steps.0", {}), "spec.strategy.steps[0]"),
    InvalidCase(
        "two-routers",
        _set("spec.traffic", {"gatewayAPI": {"httpRoute": "r"}, "replicas": {}}),
        "spec.traffic",
    ),
    InvalidCase("no-router", _set("spec.traffic", {"port": 8080}), "spec.traffic"),
    InvalidCase(
        "metric-without-query",
        _set("spec.analysis.metrics.0", {"name": "error-rate", "max": 1}),
        "spec.analysis.metrics[0]",
    ),
    InvalidCase(
        "metric-with-query-and-counts",
        _set("spec.analysis.metrics.2.query", "up"),
        "spec.analysis.metrics[2]",
    ),
    InvalidCase(
        "bounds-on-a-count-metric",
        _set("spec.analysis.metrics.2.max", 0.05),
        "spec.analysis.metrics[2]",
    ),
    InvalidCase(
        "slice-on-a-query-metric",
        _set("spec.analysis.metrics.0.slice", {"label": "segment"}),
        "spec.analysis.metrics[0].slice",
    ),
    InvalidCase(
        "placeholder-typo",
        _set("spec.analysis.metrics.0.query", 'sum(errors{revision="{{revison}}"})'),
        "spec.analysis.metrics[0].query",
    ),
    InvalidCase(
        "placeholder-not-closed",
        _set("spec.analysis.metrics.0.query", 'sum(errors{revision="{{revision}"})'),
        "spec.analysis.metrics[0].query",
    ),
    InvalidCase(
        "placeholder-typo-in-a-count-query",
        _set("spec.analysis.metrics.2.errors.total", 'sum(x{revision="{{Revision}}"})'),
        "spec.analysis.metrics[2].errors.total",
    ),
    InvalidCase(
        "placeholder-typo-in-min-samples",
        _set("spec.analysis.minSamples.query", 'sum(x{namespace="{{namepsace}}"})'),
        "spec.analysis.minSamples.query",
    ),
    InvalidCase(
        "negative-tolerance",
        _set("spec.analysis.metrics.3.latency.tolerance", -0.1),
        "spec.analysis.metrics[3].latency.tolerance",
    ),
    InvalidCase(
        "slice-label-not-a-label-name",
        _set("spec.analysis.metrics.2.slice.label", "customer-segment"),
        "spec.analysis.metrics[2].slice.label",
    ),
    InvalidCase(
        "too-many-slices",
        _set("spec.analysis.metrics.2.slice.max", 33),
        "spec.analysis.metrics[2].slice.max",
    ),
    InvalidCase("alpha-zero", _set("spec.analysis.alpha", 0), "spec.analysis.alpha"),
    InvalidCase("alpha-too-large", _set("spec.analysis.alpha", 0.5), "spec.analysis.alpha"),
    InvalidCase(
        "metric-with-empty-query",
        _set("spec.analysis.metrics.0.query", ""),
        "spec.analysis.metrics[0].query",
    ),
    InvalidCase(
        "metric-without-bound",
        _set("spec.analysis.metrics.0", {"name": "e", "query": "up"}),
        "spec.analysis.metrics[0]",
    ),
    InvalidCase(
        "metric-min-above-max",
        _set("spec.analysis.metrics.0", {"name": "e", "query": "up", "min": 2, "max": 1}),
        "spec.analysis.metrics[0].min",
    ),
    InvalidCase(
        "negative-relative-bound",
        _set("spec.analysis.metrics.0.maxRelativeToStable", -1),
        "spec.analysis.metrics[0].maxRelativeToStable",
    ),
    InvalidCase(
        "metric-name-with-space",
        _set("spec.analysis.metrics.0.name", "error rate"),
        "spec.analysis.metrics[0].name",
    ),
    InvalidCase(
        "malformed-pause-duration",
        _set("spec.strategy.steps.1.pause.duration", "5 minutes"),
        "spec.strategy.steps[1].pause.duration",
    ),
    InvalidCase(
        "interval-without-unit", _set("spec.analysis.interval", "15"), "spec.analysis.interval"
    ),
    InvalidCase(
        "zero-progress-deadline",
        _set("spec.strategy.progressDeadline", "0s"),
        "spec.strategy.progressDeadline",
    ),
    InvalidCase(
        "malformed-scale-down-delay",
        _set("spec.strategy.scaleDownDelay", "30 seconds"),
        "spec.strategy.scaleDownDelay",
    ),
    InvalidCase(
        "malformed-bake", _set("spec.strategy.bake.duration", "1d"), "spec.strategy.bake.duration"
    ),
    InvalidCase(
        "negative-failure-limit",
        _set("spec.analysis.failureLimit", -1),
        "spec.analysis.failureLimit",
    ),
    InvalidCase(
        "unknown-no-data-policy", _set("spec.analysis.noData", "ignore"), "spec.analysis.noData"
    ),
    InvalidCase(
        "unknown-outage-action",
        _set("spec.analysis.outage.then", "explode"),
        "spec.analysis.outage.then",
    ),
    InvalidCase(
        "model-name-breaking-promql",
        _set("spec.predictor.model.name", 'fraud"} or vector(1) #'),
        "spec.predictor.model.name",
    ),
    InvalidCase(
        "model-version-with-brace",
        _set("spec.predictor.model.version", "1.0}"),
        "spec.predictor.model.version",
    ),
    InvalidCase(
        "model-uri-with-quote",
        _set("spec.predictor.model.uri", 's3://m"x'),
        "spec.predictor.model.uri",
    ),
    InvalidCase("no-predictor", _set("spec.predictor", _DELETE), "spec.predictor"),
    InvalidCase("zero-replicas", _set("spec.predictor.replicas", 0), "spec.predictor.replicas"),
    InvalidCase(
        "no-containers",
        _set("spec.predictor.template.spec.containers", []),
        "spec.predictor.template.spec.containers",
    ),
    InvalidCase("port-out-of-range", _set("spec.traffic.port", 70000), "spec.traffic.port"),
    InvalidCase(
        "create-route-without-parents",
        _set("spec.traffic.gatewayAPI", {"httpRoute": "r", "create": True}),
        "spec.traffic.gatewayAPI.parentRefs",
    ),
    InvalidCase(
        "route-name-not-dns",
        _set("spec.traffic.gatewayAPI.httpRoute", "My_Route"),
        "spec.traffic.gatewayAPI.httpRoute",
    ),
    InvalidCase(
        "prometheus-address-not-url",
        _set("spec.analysis.prometheus.address", "prometheus:9090"),
        "spec.analysis.prometheus.address",
    ),
    InvalidCase(
        "min-samples-zero",
        _set("spec.analysis.minSamples.value", 0),
        "spec.analysis.minSamples.value",
    ),
    InvalidCase(
        "history-limit-zero", _set("spec.revisionHistoryLimit", 0), "spec.revisionHistoryLimit"
    ),
    InvalidCase(
        "drill-schedule-not-cron", _set("spec.drill.schedule", "every day"), "spec.drill.schedule"
    ),
    InvalidCase("unknown-drill-mode", _set("spec.drill.mode", "chaos"), "spec.drill.mode"),
    InvalidCase("warm-weight-too-high", _set("spec.drill.warmWeight", 80), "spec.drill.warmWeight"),
    InvalidCase(
        "autoscaling-min-above-max",
        _set("spec.predictor.autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        "spec.predictor.autoscaling.minReplicas",
    ),
    InvalidCase(
        "autoscaling-metric-of-unknown-type",
        _set(
            "spec.predictor.autoscaling",
            {"minReplicas": 1, "maxReplicas": 2, "metrics": [{"type": "Cpu"}]},
        ),
        "spec.predictor.autoscaling.metrics[0].type",
    ),
    InvalidCase(
        "autoscaling-with-replicas-router",
        _autoscaled_replicas_router,
        "spec.predictor.autoscaling",
    ),
]


def invalid_manifest(case: InvalidCase, name: str = "invalid") -> Manifest:
    manifest = copy.deepcopy(valid_model_deployment(name))
    case.mutate(manifest)
    return manifest
