"""A ModelDeployment (and a drill of it) in a fake API, with an injected router.

Shared by the pass skeleton's table tests (test_pass_skeleton.py) and the
drill pass's (test_drill_pass.py): the real ``Reconciler`` and
``DrillExecutor`` run over kr8s whose HTTP goes to ``FakeKube``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelcanary.api.modeldeployment import Predictor
from modelcanary.drill_executor import DrillExecutor
from modelcanary.reconcile import Reconciler
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic.replicas import ReplicasRouter
from modelcanary.view.watch import View
from modelcanary.workloads.builders import OwnerRef
from tests.unit.fake_kube import FakeKube

NS = "ns"
MD_PATH = f"/apis/modelcanary.io/v1alpha1/namespaces/{NS}/modeldeployments/fraud"
DRILL_PATH = f"/apis/modelcanary.io/v1alpha1/namespaces/{NS}/rollbackdrills/drill-1"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


OWNER = OwnerRef(
    api_version="modelcanary.io/v1alpha1", kind="ModelDeployment", name="fraud", uid="u1"
)
"""The ModelDeployment ``fraud`` that a router of these tests works for."""


def fraud_router(kube: FakeKube, view: View) -> ReplicasRouter:
    """The replicas router of ``fraud`` (one replica, its own shared Service), over ``view``."""
    return ReplicasRouter(
        kube.api(),
        namespace=NS,
        md_name="fraud",
        service=None,
        port=8080,
        owner=OWNER,
        total=1,
        view=view,
    )


def predictor(version: str) -> dict[str, Any]:
    return {
        "model": {"name": "fraud", "version": version, "uri": f"s3://m/{version}"},
        "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
    }


OLD, NEW = predictor("1.0.0"), predictor("1.1.0")
A = Predictor.model_validate(OLD).revision()
B = Predictor.model_validate(NEW).revision()


def entry(revision: str, raw: dict[str, Any], outcome: str, at: str) -> dict[str, Any]:
    return {"revision": revision, "predictor": raw, "outcome": outcome, "createdAt": at}


def serving(revision: str, raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": "Healthy",
        "stableRevision": revision,
        "lastKnownGood": {
            "revision": revision,
            "model": raw["model"],
            "promotedAt": "2026-11-27T10:00:00Z",
        },
        "history": [entry(revision, raw, "Promoted", "2026-11-27T09:59:00Z")],
    }


def available_deployment(revision: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"fraud-{revision}",
            "namespace": NS,
            "generation": 1,
            "labels": {"modelcanary.io/model": "fraud", "modelcanary.io/revision": revision},
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }


@dataclass
class FakeRouter:
    """The router the factory hands out: weights in memory, failures on demand."""

    weights: dict[str, int] | None = None
    unreadable: str | None = None
    refuses: str | None = None
    asked: list[dict[str, int]] = field(default_factory=list)

    async def ensure(self) -> None:
        pass

    async def get_weight(self) -> RouterObservation:
        if self.unreadable:
            raise OSError(self.unreadable)
        return RouterObservation(weights=dict(self.weights) if self.weights is not None else None)

    async def set_weight(self, weights: Mapping[str, int]) -> None:
        self.asked.append(dict(weights))
        if self.refuses:
            raise OSError(self.refuses)
        self.weights = dict(weights)

    async def finalize(self) -> None:
        pass


@dataclass
class Cluster:
    """One ModelDeployment in a fake API, with its router; passes run as the operator runs them."""

    kube: FakeKube = field(default_factory=FakeKube)
    router: FakeRouter = field(default_factory=FakeRouter)

    def __post_init__(self) -> None:
        self.api = self.kube.api()
        self.reconciler = Reconciler(self.api, routers=lambda *_, **__: self.router)

    def model_deployment(
        self,
        raw: dict[str, Any],
        status: dict[str, Any] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.kube.put(
            MD_PATH,
            {
                "apiVersion": "modelcanary.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {
                    "name": "fraud",
                    "namespace": NS,
                    "generation": 1,
                    "annotations": annotations or {},
                },
                "spec": {
                    "predictor": raw,
                    "traffic": {"port": 8080, "gatewayAPI": {"httpRoute": "fraud"}},
                    "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
                },
                "status": status or {},
            },
        )

    def deployment(self, revision: str, replicas: int = 1) -> None:
        self.kube.put(f"{DEPLOYMENTS}/fraud-{revision}", available_deployment(revision, replicas))

    def md_pass(self, obj: dict[str, Any] | None = None) -> Any:
        return asyncio.run(self.reconciler.run_pass(obj or self.kube.get(MD_PATH), now=NOW))

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get(MD_PATH).get("status") or {})


def drill_cluster() -> Cluster:
    cluster = Cluster(router=FakeRouter({B: 100}))
    status = serving(B, NEW)
    status["history"].append(entry(A, OLD, "Promoted", "2026-11-27T09:00:00Z"))
    cluster.deployment(B)
    cluster.model_deployment(NEW, status)
    cluster.kube.put(
        DRILL_PATH,
        {
            "apiVersion": "modelcanary.io/v1alpha1",
            "kind": "RollbackDrill",
            "metadata": {
                "name": "drill-1",
                "namespace": NS,
                "labels": {"modelcanary.io/model": "fraud"},
                "creationTimestamp": "2026-11-27T11:00:00Z",
            },
            "spec": {"modelDeployment": "fraud", "mode": "warm"},
        },
    )
    return cluster


def drill_pass(cluster: Cluster) -> Any:
    executor = DrillExecutor(cluster.reconciler)
    return asyncio.run(executor.run_pass(cluster.kube.get(DRILL_PATH), now=NOW))
