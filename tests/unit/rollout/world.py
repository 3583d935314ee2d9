"""A small simulated world for the decision core's tests, ops-style.

``World.step()`` is ``run(event, State) -> State``: it builds the observations
the edges would make from the world's state, calls the real ``decide``, and
then plays the decision's actions onto the world the way the real edges would
(a Deployment appears, a router takes weights, possibly a few passes late).
No part of the core is replaced; the world only stands where the cluster,
the router and Prometheus would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelcanary.analysis.counts import Answer, Series
from modelcanary.analysis.samples import CountArms, Sample
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelcanary.rollout.analysis import analysis_due
from modelcanary.rollout.decide import decide
from modelcanary.rollout.decision import (
    Decision,
    DeleteAutoscaler,
    DeleteRevision,
    EnsureRevision,
    ScaleRevision,
    SetWeights,
)
from modelcanary.rollout.granularity import replica_split
from modelcanary.rollout.observations import (
    ActiveDrill,
    AnalysisObservation,
    ManualAction,
    MetricObservation,
    Observations,
    RevisionObservation,
    RouterObservation,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# metric name, revision -> sample
MetricSource = Callable[[str, str], Sample]


@dataclass
class Counters:
    """Cumulative request and error counters per revision, as Prometheus would hold them,
    driven by the weights the router reads back: what count metrics are judged on."""

    error_rate: Callable[[str], float]
    """revision -> its share of failed requests."""
    rps: float = 100.0
    served: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)
    lazy: bool = False
    """Whether a revision's counters appear only with its first request; by default
    they are exported at zero from the start, as a model server should."""

    def serve(self, weights: dict[str, int], seconds: float) -> None:
        for revision, weight in weights.items():
            total = self.served.get(revision, 0.0) + round(self.rps * seconds * weight / 100)
            self.served[revision] = total
            self.failed[revision] = float(int(total * self.error_rate(revision)))

    def answers(self, revision: str) -> dict[str, Answer]:
        if revision not in self.served and self.lazy:
            return {"failed": Answer(), "total": Answer()}
        if revision not in self.served:
            return {"failed": Answer(), "total": Answer((Series({}, 0.0),))}
        return {
            "failed": Answer((Series({}, self.failed[revision]),)),
            "total": Answer((Series({}, self.served[revision]),)),
        }


def healthy_metrics(metric: str, revision: str) -> Sample:
    return Sample.of(0.001 if metric == "error-rate" else 0.1)


def spec_dict(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "predictor": {
            "model": {"name": "fraud", "version": "1.0.0", "uri": "s3://m/1.0.0"},
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
        },
        "traffic": {"gatewayAPI": {"httpRoute": "fraud"}},
        "strategy": {
            "steps": [
                {"setWeight": 10},
                {"pause": {"duration": "1m"}},
                {"setWeight": 50},
                {"pause": {"duration": "1m"}},
                {"setWeight": 100},
            ],
            "bake": {"duration": "2m"},
        },
        "analysis": {
            "interval": "15s",
            "prometheus": {"address": "http://prometheus:9090"},
            "metrics": [
                {"name": "error-rate", "query": "errors", "max": 0.01},
                {"name": "latency", "query": "p99", "max": 0.5, "maxRelativeToStable": 1.5},
            ],
        },
    }
    spec.update(overrides)
    return spec


def strategy(**fields: Any) -> dict[str, Any]:
    """The default strategy of :func:`spec_dict` with some fields changed."""
    return {**spec_dict()["strategy"], **fields}


def make_spec(version: str = "1.0.0", **overrides: Any) -> ModelDeploymentSpec:
    raw = spec_dict(**overrides)
    raw["predictor"]["model"]["version"] = version
    raw["predictor"]["model"]["uri"] = f"s3://m/{version}"
    return ModelDeploymentSpec.model_validate(raw)


@dataclass
class World:
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    now: datetime = T0
    replicas: dict[str, int] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    """Revisions whose pods never become ready."""
    problems: dict[str, str] = field(default_factory=dict)
    """revision -> the Deployment's own complaint (ReplicaFailure, Progressing=False)."""
    route: dict[str, int] | None = None
    router_lag: int = 0
    """Passes before a SetWeights shows in the read-back."""
    router_error: str | None = None
    """The router cannot be read (its weights are None); requests to it still land."""
    metrics: MetricSource = healthy_metrics
    samples: float | None = 1000.0
    counters: Counters | None = None
    """Counters for count metrics (errors kind); required when the spec has any."""
    prometheus_online: bool = True
    drill: ActiveDrill | None = None
    decisions: list[Decision] = field(default_factory=list)
    autoscalers: dict[str, tuple[int, int]] = field(default_factory=dict)
    """revision -> (minReplicas, maxReplicas) of its HPA."""
    load: dict[str, int] = field(default_factory=dict)
    """revision -> the replicas its HPA would choose from its metrics (within its bounds)."""
    replica_writes: list[tuple[str, int]] = field(default_factory=list)
    """Every replica count the operator itself set, in order."""
    shifts: list[tuple[dict[str, int], dict[str, int]]] = field(default_factory=list)
    """Every SetWeights, with the ready replicas of each revision when it was made."""
    _pending_route: list[tuple[int, dict[str, int]]] = field(default_factory=list)
    router_calls: int = 0

    # -- observing -----------------------------------------------------------------

    def _available(self, revision: str) -> bool:
        return self.replicas.get(revision, 0) > 0 and revision not in self.broken

    def observe(self, action: ManualAction | None = None) -> Observations:
        revisions = {
            rev: RevisionObservation(
                revision=rev,
                exists=True,
                desired_replicas=count,
                ready_replicas=count if self._available(rev) else 0,
                available=self._available(rev),
                autoscaler_min_replicas=(
                    self.autoscalers[rev][0] if rev in self.autoscalers else None
                ),
                problem=self.problems.get(rev),
            )
            for rev, count in self.replicas.items()
        }
        return Observations(
            revisions=revisions,
            router=(
                RouterObservation(weights=None, error=self.router_error)
                if self.router_error
                else RouterObservation(weights=self._read_back())
            ),
            analysis=self._analysis(),
            action=action,
            drill=self.drill,
        )

    def _read_back(self) -> dict[str, int] | None:
        if self.spec.traffic.replicas is None:
            return dict(self.route) if self.route is not None else None
        ready = {r: n for r, n in self.replicas.items() if n > 0 and r not in self.broken}
        total = sum(ready.values())
        if total == 0:
            return None
        return {r: round(100 * n / total) for r, n in ready.items()}

    def _analysis(self) -> AnalysisObservation | None:
        if not analysis_due(self.spec, self.status, self.now):
            return None
        assert self.spec.analysis is not None
        if not self.prometheus_online:
            return AnalysisObservation(at=self.now, prometheus_online=False)
        canary, stable = self.status.canary_revision, self.status.stable_revision
        assert canary is not None
        metrics = tuple(
            MetricObservation(
                name=m.name,
                candidate=self.metrics(m.name, canary),
                stable=self.metrics(m.name, stable) if stable else None,
            )
            for m in self.spec.analysis.metrics
            if not m.is_count
        )
        samples = Sample.of(self.samples) if self.spec.analysis.min_samples else None
        counts = {}
        for metric in self.spec.analysis.count_metrics:
            assert self.counters is not None, "a spec with count metrics needs World.counters"
            counts[metric.name] = CountArms(
                candidate=self.counters.answers(canary),
                stable=self.counters.answers(stable) if stable else None,
            )
        return AnalysisObservation(
            at=self.now, prometheus_online=True, metrics=metrics, samples=samples, counts=counts
        )

    # -- one pass --------------------------------------------------------------------

    def step(
        self,
        action: ManualAction | None = None,
        advance: timedelta = timedelta(seconds=5),
    ) -> Decision:
        observations = self.observe(action)
        decision = decide(self.spec, self.status, observations, self.now, generation=1)
        # The core is a function: the same inputs give the same decision.
        assert decide(self.spec, self.status, observations, self.now, generation=1) == decision
        self.apply(decision)
        self.status = decision.status
        self.decisions.append(decision)
        if self.counters is not None:
            self.counters.serve(self._read_back() or {}, advance.total_seconds())
        self.now += advance
        return decision

    def apply(self, decision: Decision) -> None:  # noqa: PLR0912 - one branch per action kind
        for pending in list(self._pending_route):
            passes, weights = pending
            self._pending_route.remove(pending)
            if passes <= 0:
                self.route = weights
            else:
                self._pending_route.append((passes - 1, weights))
        for action in decision.actions:
            if isinstance(action, EnsureRevision):
                if action.replicas is not None:
                    self.replicas[action.revision] = action.replicas
                    self.replica_writes.append((action.revision, action.replicas))
                else:
                    self.replicas.setdefault(action.revision, 0)
                self.roles[action.revision] = action.role
                scaling = action.predictor.autoscaling
                if action.autoscaler_min_replicas is not None and scaling is not None:
                    bounds = (action.autoscaler_min_replicas, scaling.max_replicas)
                    self.autoscalers[action.revision] = bounds
            elif isinstance(action, ScaleRevision):
                self.replicas[action.revision] = action.replicas
                self.replica_writes.append((action.revision, action.replicas))
            elif isinstance(action, DeleteAutoscaler):
                self.autoscalers.pop(action.revision, None)
            elif isinstance(action, SetWeights):
                self.router_calls += 1
                weights = action.as_dict()
                ready = {r: n for r, n in self.replicas.items() if self._available(r)}
                self.shifts.append((weights, ready))
                assert sum(weights.values()) == 100, weights
                if self.spec.traffic.replicas is not None:
                    self._scale_for(weights, decision.status.canary_revision)
                elif self.router_lag:
                    self._pending_route.append((self.router_lag - 1, weights))
                else:
                    self.route = weights
            elif isinstance(action, DeleteRevision):
                self.replicas.pop(action.revision, None)
                self.autoscalers.pop(action.revision, None)
        self._autoscale()

    def _autoscale(self) -> None:
        """The HPA controller: within its bounds, as its load says; it leaves zero alone."""
        for revision, (minimum, maximum) in self.autoscalers.items():
            current = self.replicas.get(revision, 0)
            if current > 0:
                wanted = self.load.get(revision, current)
                self.replicas[revision] = min(max(wanted, minimum), maximum)

    def _scale_for(self, weights: dict[str, int], canary: str | None) -> None:
        """The replicas router: weights become replica counts behind one Service."""
        total = self.spec.predictor.replicas
        if canary is None or canary not in weights:
            for revision, weight in weights.items():
                self.replicas[revision] = total if weight == 100 else 0
            return
        stable_count, canary_count = replica_split(total, weights[canary])
        for revision in weights:
            self.replicas[revision] = canary_count if revision == canary else stable_count

    def run(
        self,
        until: Callable[[World], bool],
        *,
        passes: int = 400,
        advance: timedelta = timedelta(seconds=5),
    ) -> World:
        for _ in range(passes):
            if until(self):
                return self
            self.step(advance=advance)
        raise AssertionError(f"not reached after {passes} passes: {self.status.message}")

    def roll_out(self, spec: ModelDeploymentSpec) -> World:
        """Apply a new spec (a new predictor starts a canary)."""
        self.spec = spec
        return self

    def events(self) -> list[str]:
        return [event.reason for decision in self.decisions for event in decision.events]


def serving_first_revision(spec: ModelDeploymentSpec | None = None) -> World:
    world = World(spec or make_spec("1.0.0"))
    world.run(lambda w: w.status.phase == "Healthy")
    return world
