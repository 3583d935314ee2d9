"""The chart's RBAC is exactly what the operator needs, proven on an audited API server.

``helm install`` puts the chart on the full tier. kwok pods run no containers,
so the operator runs as a process with the chart's ServiceAccount's own token
(a TokenRequest), and completes the good-candidate canary, two verify drills
(the older pruned) and a drill schedule (its CronJob made and removed), then
the ModelDeployment is deleted. The API server's audit log then shows that
(a) no request of the ServiceAccount was refused, and (b) every verb on every
resource the rendered (Cluster)Roles grant was used, except the two rights the
operator only grants onward to its drill Jobs' Role, which Kubernetes refuses
to let anyone grant without holding them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
import yaml
from kr8s.objects import (
    CronJob,
    Deployment,
    Namespace,
    Role,
    RoleBinding,
    Secret,
    ServiceAccount,
    new_class,
)

from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Toolchain
from e2e.harness.kubernetes import wait_for
from modelcanary.drills.schedule import MANAGED_BY, build_drill_rbac_specs
from tests.chart import CHART, Right, audited_full_tier, granted, token_kubeconfig
from tests.chart import helm_on as helm

pytestmark = pytest.mark.e2e

RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)
GOOD, BETTER = "1.0.0", "1.1.0"
RELEASE = "mc"
MANAGED_KEY = next(iter(MANAGED_BY))


@pytest.fixture(scope="module")
def plane(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with audited_full_tier(toolchain, tmp_path_factory.mktemp("audited-plane")) as audited:
        yield audited


def granted_onward(namespace: str) -> set[Right]:
    """What the operator's drill-Job Role grants: it must hold these itself."""
    specs = build_drill_rbac_specs(md_name="x", md_uid="u", namespace=namespace)
    role = next(spec for spec in specs if spec["kind"] == "Role")
    return granted(yaml.safe_dump(role))


def create_drill(world: CanaryScenario) -> str:
    drill = RollbackDrill(
        {
            "metadata": {"generateName": f"{world.name}-drill-", "namespace": world.namespace},
            "spec": {"modelDeployment": world.name, "mode": "verify"},
        },
        api=world.api,
    )
    drill.create()
    name = str(drill.name)
    status = world.wait_for_status(
        lambda s: (s.get("lastDrill") or {}).get("name") == name, timeout=90, what=f"drill {name}"
    )
    assert status["lastDrill"]["succeeded"] is True, status["lastDrill"]
    return name


def drill_names(world: CanaryScenario) -> set[str]:
    return {
        d.name
        for d in RollbackDrill.list(namespace=world.namespace, api=world.api)
        if isinstance(d, RollbackDrill)
    }


def cronjob(world: CanaryScenario) -> Any:
    try:
        return CronJob.get(f"{world.name}-drill", namespace=world.namespace, api=world.api)
    except kr8s.NotFoundError:
        return None


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_the_operator_runs_with_exactly_the_charts_rights(
    plane: ControlPlane, prometheus: PrometheusServer, tmp_path: Path, mode: str
) -> None:
    api = kr8s.api(kubeconfig=str(plane.kubeconfig))
    namespace, release_ns = f"models-{mode}", f"modelcanary-{mode}"
    Namespace({"metadata": {"name": namespace}}, api=api).create()
    values = ["--set", f"mode={mode}", "--set", f"watchNamespaces={{{namespace}}}"]
    helm(plane, "install", RELEASE, str(CHART), "-n", release_ns, "--create-namespace",
         "--skip-crds", *values)  # fmt: skip
    rendered = helm(plane, "template", RELEASE, str(CHART), "-n", release_ns, *values,
                    "--show-only", "templates/rbac.yaml")  # fmt: skip
    account = f"{RELEASE}-modelcanary"
    user = f"system:serviceaccount:{release_ns}:{account}"
    kubeconfig = token_kubeconfig(plane, release_ns, account, tmp_path / "operator.kubeconfig")
    # A Prometheus header from a Secret: the one right on Secrets, used.
    Secret(
        {
            "metadata": {"name": "prometheus-tenant", "namespace": namespace},
            "stringData": {"tenant": "models"},
        },
        api=api,
    ).create()
    header = [
        {"name": "X-Scope-OrgID", "secretKeyRef": {"name": "prometheus-tenant", "key": "tenant"}}
    ]
    schedule = {"schedule": "17 3 1 1 *", "mode": "verify", "historyLimit": 1}

    with CanaryScenario(
        plane,
        api,
        namespace,
        prometheus,
        tmp_path,
        operator_kubeconfig=kubeconfig,
        operator_clusterwide=mode == "cluster",
    ) as world:

        def manifest(version: str, **overrides: Any) -> dict[str, Any]:
            body = world.manifest(version, **overrides)
            body["spec"]["analysis"]["prometheus"]["headers"] = header
            # Autoscaled: each revision's HPA is created, relabelled on promotion
            # (patch) and deleted when its revision is retired.
            body["spec"]["predictor"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
            return body

        # The good candidate: served, then a better version walked 10/50/100 and promoted.
        world.apply(manifest(GOOD))
        first = world.wait_for_status(
            lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") is not None,
            timeout=90,
            what=f"{GOOD} serving",
        )["stableRevision"]
        world.apply(manifest(BETTER, drill=schedule))
        status = world.wait_for_status(
            lambda s: (
                s.get("phase") == "Healthy"
                and s.get("stableRevision") not in (None, first)
                and s.get("canaryRevision") is None
            ),
            timeout=150,
            what=f"{BETTER} promoted",
        )
        assert [e["outcome"] for e in status["history"]] == ["Promoted", "Promoted"]
        assert wait_for(lambda: cronjob(world), timeout=30, what="the drill CronJob")
        # Two verify drills; historyLimit 1 prunes the older one.
        older = create_drill(world)
        newer = create_drill(world)
        wait_for(lambda: drill_names(world) == {newer}, timeout=30, what=f"{older} pruned")
        # Someone edits the drill Job's rights; a new schedule puts all four right.
        for kind in (ServiceAccount, Role, RoleBinding):
            found = kind.get(f"{world.name}-drill", namespace=namespace, api=api)
            found.patch({"metadata": {"labels": {MANAGED_KEY: "someone"}}})
        world.apply(manifest(BETTER, drill={**schedule, "schedule": "18 3 1 1 *"}))
        wait_for(
            lambda: cronjob(world).raw["spec"]["schedule"] == "18 3 1 1 *",
            timeout=30,
            what="the CronJob patched",
        )
        # spec.drill gone: the CronJob and its rights go; a history of one
        # retires the first revision (its Deployment and Service deleted).
        world.apply(manifest(BETTER, drill=None, revisionHistoryLimit=1))
        wait_for(
            lambda: len(list(Deployment.list(namespace=namespace, api=api))) == 1,
            timeout=30,
            what="the first revision deleted",
        )
        wait_for(lambda: cronjob(world) is None, timeout=30, what="the CronJob removed")
        # Deleted: the operator lets it go (kopf removes its finalizer).
        world.get().delete()
        wait_for(lambda: world.get() is None, timeout=30, what="the ModelDeployment deleted")
        log = world.operator.log_text()

    Namespace.get(namespace, api=api).delete()
    records = plane.audit_records(user)
    assert records, f"no request of {user} in the audit log"
    refused = sorted({(r.verb, r.uri) for r in records if r.code == 403})
    assert not refused, f"the chart's RBAC refused the operator: {refused}"
    assert "Not enough permissions" not in log
    used = {
        (r.group, f"{r.resource}/{r.subresource}" if r.subresource else r.resource, r.verb)
        for r in records
        if r.resource
    }
    unused = granted(rendered) - used - granted_onward(namespace)
    assert not unused, f"granted but never used: {sorted(unused)}"
