"""The chart's HA mode: of two peered replicas only one acts, and the other takes over.

``ha.enabled`` runs several replicas of the operator that elect, through kopf
peering, the one that acts; nothing else stops two of them from writing the
same objects. So this proves it at runtime, on an audited API server, for both
peering objects the chart creates (a ClusterKopfPeering in cluster mode, a
KopfPeering per watched namespace in namespaced mode), with the chart's own
rights: ``helm install`` in HA mode, then two operator processes started with
the chart's peering arguments, each with a token of its own of the chart's
ServiceAccount. The audit log names each request's token
(``user.extra["authentication.kubernetes.io/credential-id"]``), so it tells
the two replicas apart although they share one user name.

While both replicas are up and in the peering status, a canary (a good
version, then a better one promoted) is written by one token only; the other
writes nothing but its heartbeat. The active one is then SIGKILLed, the
standby cleans its record, resumes within the chart's peering lifetime and
promotes a third version alone. No request of either is refused, and every
peering right the chart grants is used.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
import yaml
from kr8s.objects import Namespace

from e2e.dataplane.operator import OperatorProcess
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer, Toolchain
from e2e.harness.kubernetes import wait_for
from tests.chart import (
    CHART,
    WRITE_VERBS,
    Call,
    audited_full_tier,
    calls,
    credential_id,
    granted,
    helm_on,
    token_kubeconfig,
    write_values,
)

pytestmark = pytest.mark.e2e

GOOD, BETTER, BEST = "1.0.0", "1.1.0", "1.2.0"
# The schema's minimum: the takeover waits this long at most, and the test
# should not wait kopf's default minute.
LIFETIME = 15
# What the operator itself writes for a canary: status, revisions, traffic split.
OPERATOR_WRITES = {
    ("modelcanary.io", "modeldeployments/status"),
    ("apps", "deployments"),
    ("gateway.networking.k8s.io", "httproutes"),
}
# kopf's own log lines when a replica's peering pauses or resumes it.
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"
FROZEN = "Pausing all operators, including self"
QUICK: dict[str, Any] = {"steps": [{"setWeight": 50}, {"setWeight": 100}], "bake": "2s"}


@pytest.fixture(scope="module")
def plane(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with audited_full_tier(toolchain, tmp_path_factory.mktemp("ha-plane")) as audited:
        yield audited


def operator_writes(found: list[Call]) -> list[Call]:
    return [c for c in found if c.verb in WRITE_VERBS and (c.group, c.resource) in OPERATOR_WRITES]


@dataclasses.dataclass
class Replica:
    name: str  # its POD_ID: kopf's identity for it in the peering status
    credential: str
    process: OperatorProcess


def paused(log: str) -> bool:
    """Never resumed (it started paused and saw a stronger peer), or paused since."""
    return RESUMED not in log or log.rfind(PAUSED) > log.rfind(RESUMED)


def container_args(rendered: str) -> dict[str, str]:
    deployment = next(
        doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "Deployment"
    )
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(arg.removeprefix("--").split("=", 1) for arg in args if "=" in arg)


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_one_replica_acts_and_the_standby_takes_over(
    plane: ControlPlane, prometheus: PrometheusServer, tmp_path: Path, mode: str
) -> None:
    api = kr8s.api(kubeconfig=str(plane.kubeconfig))
    namespace, release_ns, release = f"ha-models-{mode}", f"ha-system-{mode}", f"ha-{mode}"
    Namespace({"metadata": {"name": namespace}}, api=api).create()
    # The first release installs kopf's peering CRDs; another release on the
    # same cluster leaves them to it, as the value's documentation says.
    crds_there = (
        plane.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/kopfpeerings.kopf.dev"
        )[0]
        == 200
    )
    values = write_values(
        {
            "mode": mode,
            "watchNamespaces": [namespace],
            "ha": {
                "enabled": True,
                "replicas": 2,
                "peeringLifetime": LIFETIME,
                "installPeeringCRDs": not crds_there,
            },
        },
        tmp_path,
    )
    helm_on(plane, "install", release, str(CHART), "-n", release_ns, "--create-namespace",
            "--skip-crds", "-f", str(values))  # fmt: skip
    rendered = helm_on(plane, "template", release, str(CHART), "-n", release_ns, "-f", str(values),
                       "--show-only", "templates/rbac.yaml",
                       "--show-only", "templates/deployment.yaml")  # fmt: skip
    args = container_args(rendered)
    peering, lifetime = args["peering"], int(args["peering-lifetime"])
    assert lifetime == LIFETIME
    plural = "clusterkopfpeerings" if mode == "cluster" else "kopfpeerings"
    where = "" if mode == "cluster" else f"/namespaces/{namespace}"
    peering_path = f"/apis/kopf.dev/v1{where}/{plural}/{peering}"
    code, body = plane.request("GET", peering_path)
    assert code == 200, f"the chart's {plural} {peering} is missing: {body}"

    def peering_status() -> dict[str, Any]:
        code, body = plane.request("GET", peering_path)
        assert code == 200, body
        return dict(body.get("status") or {})

    def live_peers() -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        return {
            identity: peer
            for identity, peer in peering_status().items()
            if datetime.datetime.fromisoformat(peer["lastseen"])
            + datetime.timedelta(seconds=peer["lifetime"])
            > now
        }

    account = f"{release}-modelcanary"
    user = f"system:serviceaccount:{release_ns}:{account}"
    replicas = []
    for name in ("replica-a", "replica-b"):
        kubeconfig = token_kubeconfig(plane, release_ns, account, tmp_path / f"{name}.kubeconfig")
        process = OperatorProcess(
            kubeconfig,
            None if mode == "cluster" else namespace,
            tmp_path / name,
            peering=peering,
            peering_lifetime=lifetime,
            env={"POD_ID": name},
        )
        replicas.append(Replica(name, credential_id(kubeconfig), process))
    first, second = replicas
    assert first.credential != second.credential

    world = CanaryScenario(plane, api, namespace, prometheus, tmp_path / "world")
    # The scenario starts its operator last, once the data plane is up: make
    # that the first replica, started exactly as the chart's pods are.
    world.operator = first.process
    with world:
        # Alone, the first replica finds no other peer and acts.
        wait_for(lambda: first.name in live_peers(), timeout=30, what="the first heartbeat")
        wait_for(lambda: RESUMED in first.process.log_text(), timeout=30, what="it resumes")
        second.process.start()
        try:
            peers = wait_for(
                lambda: (found := live_peers()).keys() >= {first.name, second.name} and found,
                timeout=30,
                what="both replicas in the peering status",
            )
            # Each replica must have a priority of its own: at equal ones
            # kopf pauses every replica and nobody serves the cluster.
            assert peers[first.name]["priority"] != peers[second.name]["priority"], peers
            active, standby = sorted(replicas, key=lambda r: -peers[r.name]["priority"])
            wait_for(
                lambda: paused(standby.process.log_text()), timeout=30, what="the standby paused"
            )

            previous, stable = world.two_promoted(GOOD, BETTER)
            assert previous != stable
            assert active.process.is_running()
            assert standby.process.is_running()
            assert live_peers().keys() >= {first.name, second.name}
            found = calls(plane, user)
            writes = operator_writes(found)
            assert {(c.group, c.resource) for c in writes} == OPERATOR_WRITES
            by = {c.credential for c in writes}
            assert by == {active.credential}, (
                f"operator writes came from {by}; active {active.name}={active.credential}, "
                f"standby {standby.name}={standby.credential}"
            )
            assert {
                (c.group, c.resource) for c in found
                if c.credential == standby.credential and c.verb in WRITE_VERBS
            } == {("kopf.dev", plural)}, "the standby wrote more than its heartbeat"  # fmt: skip

            # The active replica dies without a word: its record stays until
            # its lifetime runs out, then the standby removes it and resumes.
            resumed = standby.process.log_text().count(RESUMED)
            active.process.kill()
            killed = time.monotonic()
            wait_for(
                lambda: standby.process.log_text().count(RESUMED) > resumed,
                timeout=lifetime + 20,
                what=f"{standby.name} taking over",
            )
            takeover = time.monotonic() - killed
            assert takeover < lifetime + 10, f"the takeover took {takeover:.0f}s"
            # Removed, not merely expired: the dead replica never could.
            wait_for(
                lambda: active.name not in peering_status(),
                timeout=10,
                what=f"{standby.name} removing {active.name}'s record",
            )
            mark = len(calls(plane, user))
            world.apply(world.manifest(BEST, **QUICK))
            status = world.wait_for_status(
                lambda s: (
                    s.get("phase") == "Healthy"
                    and s.get("stableRevision") not in (None, previous, stable)
                    and s.get("canaryRevision") is None
                ),
                timeout=90,
                what=f"{BEST} promoted by {standby.name}",
            )
            assert [e["outcome"] for e in status["history"]][-1] == "Promoted"
            after = operator_writes(calls(plane, user)[mark:])
            assert {(c.group, c.resource) for c in after} == OPERATOR_WRITES
            assert {c.credential for c in after} == {standby.credential}
            # Deleted while the standby-turned-active runs, so that kopf lets
            # it go and no later test's operator finds it.
            world.get().delete()
            wait_for(lambda: world.get() is None, timeout=30, what="the ModelDeployment deleted")
            logs = {r.name: r.process.log_text() for r in replicas}
        finally:
            second.process.stop()

    found = calls(plane, user)
    refused = sorted({(c.credential, c.verb, c.resource) for c in found if c.code == 403})
    assert not refused, f"the chart's RBAC refused a replica: {refused}"
    for name, log in logs.items():
        assert "Not enough permissions" not in log, name
        assert FROZEN not in log, f"{name} froze with a same-priority peer"
    used = {(c.group, c.resource, c.verb) for c in found}
    peering_rights = {right for right in granted(rendered) if right[0] == "kopf.dev"}
    assert {resource for _, resource, _ in peering_rights} == {plural}
    assert peering_rights <= used, f"peering rights never used: {sorted(peering_rights - used)}"
