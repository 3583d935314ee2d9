"""The chart's rendered manifests against a real API server, and `helm install` of bad values.

tests/integration/test_chart.py checks what the chart renders with helm alone;
here the fast tier's kube-apiserver judges it. Every documented mode is
rendered with `helm template` and applied with `kubectl apply --dry-run=server`,
so every object passes the API server's validation, defaulting and admission,
and the ServiceMonitor and PrometheusRule pass the schemas of the real
prometheus-operator CRDs (taken from its Go module, see e2e/toolchain/build.sh).
Then `helm install` of bad values is refused against the same API server.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness import ControlPlane
from e2e.harness.binaries import Toolchain
from tests.chart import CHART, run_helm, write_values

PROMETHEUS_OPERATOR_CRDS = (
    "monitoring.coreos.com_servicemonitors.yaml",
    "monitoring.coreos.com_prometheusrules.yaml",
)
pytestmark = pytest.mark.integration

MONITORING = {
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}
# Each documented mode; WATCHED stands for namespaces created for the test.
WATCHED = "<watched>"
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"mode": "namespaced", "watchNamespaces": WATCHED},
    "ha": {"ha": {"enabled": True}},
    "ha-namespaced": {"mode": "namespaced", "watchNamespaces": WATCHED, "ha": {"enabled": True}},
    "monitoring": MONITORING,
    "everything": {
        "mode": "namespaced",
        "watchNamespaces": WATCHED,
        "ha": {"enabled": True},
        **MONITORING,
    },
}


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, modelcanary_crds: list[str]) -> ControlPlane:
    """The fast tier with every CRD the chart's objects can be of, except kopf's
    peering CRDs: the chart itself installs those (see ``_dry_run``)."""
    control_plane.install_gateway_api()
    crds = [
        control_plane.toolchain.prometheus_operator_crds / name for name in PROMETHEUS_OPERATOR_CRDS
    ]
    control_plane.install_crds(crds)
    return control_plane


def _render(toolchain: Toolchain, values: dict[str, Any], namespace: str, tmp_path: Path) -> str:
    values_file = write_values(values, tmp_path)
    result = run_helm(
        toolchain.helm, "template", "release", str(CHART), "-n", namespace, "-f", str(values_file)
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects)


def _apply_dry_run(cluster: ControlPlane, manifest: str) -> subprocess.CompletedProcess[str]:
    # The chart sets every namespaced object's namespace itself (the release's,
    # or a watched one), so no -n here. kubectl's default --validate=strict
    # makes unknown fields an error, too.
    return cluster.kubectl("apply", "--dry-run=server", "-f", "-", check=False, input_text=manifest)


def _dry_run(cluster: ControlPlane, namespace: str, manifest: str, tmp_path: Path) -> None:
    """Server-side dry-run of a rendered manifest, the way Helm would create it.

    A dry-run persists nothing, so objects of a CRD rendered in the same
    manifest (HA's KopfPeering/ClusterKopfPeering, of the chart's own kopf.dev
    CRDs) cannot be dry-run with it: the API server does not know their kind
    yet. Helm has the same problem, which is why those objects are post-install
    hooks: it creates the CRDs with the release and the peering objects after.
    So this does the same in two steps: first everything but the objects of
    those kinds (the CRDs themselves included, dry-run); then the CRDs are
    created for real, the remaining objects are dry-run, and the CRDs are
    deleted again.
    """
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    new_kinds = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in crds}

    def of_new_kind(obj: dict[str, Any]) -> bool:
        return (obj["apiVersion"].split("/")[0], obj["kind"]) in new_kinds

    first = [o for o in objects if not of_new_kind(o)]
    later = [o for o in objects if of_new_kind(o)]
    result = _apply_dry_run(cluster, _dump(first))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(first), result.stdout
    if later:
        paths = []
        for crd in crds:
            path = tmp_path / f"{crd['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(crd))
            paths.append(path)
        names = cluster.install_crds(paths)
        try:
            result = _apply_dry_run(cluster, _dump(later))
            assert result.returncode == 0, result.stderr
            assert result.stdout.count("(server dry run)") == len(later), result.stdout
        finally:
            # Leave the shared API server as found: a later `helm install` with
            # HA would refuse CRDs that exist without its release's ownership.
            cluster.kubectl("delete", "crd", *names, "--timeout=60s")


def _create_namespaces(cluster: ControlPlane, base: str, count: int) -> list[str]:
    names = [f"{base[:50]}-w{i}" for i in range(count)]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    return names


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_accepted_by_a_server_side_dry_run(
    cluster: ControlPlane, namespace: str, tmp_path: Path, mode: str
) -> None:
    values = copy.deepcopy(MODES[mode])
    if values.get("watchNamespaces") == WATCHED:
        # Roles, RoleBindings and KopfPeerings land in the watched namespaces.
        values["watchNamespaces"] = _create_namespaces(cluster, namespace, 2)
    manifest = _render(cluster.toolchain, values, namespace, tmp_path)
    kinds = {doc["kind"] for doc in yaml.safe_load_all(manifest) if doc}
    assert "Deployment" in kinds
    if mode in ("monitoring", "everything"):
        assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    if mode.startswith("ha") or mode == "everything":
        assert kinds & {"KopfPeering", "ClusterKopfPeering"}
    _dry_run(cluster, namespace, manifest, tmp_path)


def _mutated(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


@dataclass(frozen=True)
class Breakage:
    kind: str
    mutate: Callable[[dict[str, Any]], object]
    message: str


BREAKAGES = [
    pytest.param(
        Breakage("Deployment", lambda o: o["spec"].update(replicas=-1), "spec.replicas"),
        id="negative-replicas",
    ),
    pytest.param(
        Breakage(
            "Deployment",
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(
                imagePullPolicy="Often"
            ),
            "imagePullPolicy",
        ),
        id="bad-pull-policy",
    ),
    # The prometheus-operator CRDs' schemas are really enforced.
    pytest.param(
        Breakage(
            "ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scheme="gopher"), "scheme"
        ),
        id="servicemonitor-bad-scheme",
    ),
    pytest.param(
        Breakage("PrometheusRule", lambda o: o["spec"].update(unknownField=True), "unknownField"),
        id="prometheusrule-unknown-field",
    ),
]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_manifest_is_refused_by_the_dry_run(
    cluster: ControlPlane, namespace: str, tmp_path: Path, breakage: Breakage
) -> None:
    manifest = _render(cluster.toolchain, MONITORING, namespace, tmp_path)
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    assert _apply_dry_run(cluster, _dump(objects)).returncode == 0
    [target] = [o for o in objects if o["kind"] == breakage.kind]
    breakage.mutate(target)
    result = _apply_dry_run(cluster, _dump(objects))
    assert result.returncode != 0
    assert breakage.message in result.stderr, result.stderr


def _helm(cluster: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return run_helm(
        cluster.toolchain.helm, "--kubeconfig", str(cluster.kubeconfig), *args, timeout=120
    )


def _install(
    cluster: ControlPlane, namespace: str, values: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    values_file = write_values(values, tmp_path)
    return _helm(cluster, "install", "mc", str(CHART), "-n", namespace, "-f", str(values_file))


def _installed(cluster: ControlPlane, namespace: str) -> tuple[str, str]:
    # Helm 4 lists releases in any status (failed, pending) by default.
    releases = _helm(cluster, "list", "-q", "-n", namespace)
    assert releases.returncode == 0, releases.stderr
    deployments = cluster.kubectl("get", "deployments", "-n", namespace, "-o", "name")
    return releases.stdout.strip(), deployments.stdout.strip()


def test_helm_install_of_good_values_installs(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # The control for the test below: the same command does install.
    result = _install(cluster, namespace, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert _installed(cluster, namespace) == ("mc", "deployment.apps/mc-modelcanary")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        pytest.param({"replicaCount": -1}, "/replicaCount", id="negative-replicas"),
        pytest.param({"mode": "everywhere"}, "/mode", id="unknown-mode"),
        pytest.param({"image": {"tag": "bad tag!"}}, "/image/tag", id="malformed-tag"),
    ],
)
def test_helm_install_refuses_bad_values_naming_the_value(
    cluster: ControlPlane, namespace: str, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    result = _install(cluster, namespace, values, tmp_path)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr
    assert _installed(cluster, namespace) == ("", "")
