"""The Helm chart lints and renders in every documented mode, and refuses bad values.

Only the helm binary is needed, no cluster: these tests check what the chart
renders, the e2e tier checks that a cluster accepts and runs it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.harness.binaries import find_toolchain
from tests.chart import CHART, run_helm, write_values

pytestmark = pytest.mark.integration

# Each documented mode, as the values a user would pass.
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"mode": "namespaced", "watchNamespaces": ["a", "b"]},
    "ha": {"ha": {"enabled": True}},
    "ha-namespaced": {"mode": "namespaced", "watchNamespaces": ["a", "b"], "ha": {"enabled": True}},
    "monitoring": {
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        }
    },
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return find_toolchain().helm


def _helm(
    helm: Path, command: str, values: dict[str, Any], tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    release: Sequence[str] = ["release"] if command == "template" else []
    values_file = write_values(values, tmp_path)
    return run_helm(
        helm,
        command,
        *release,
        str(CHART),
        "--namespace",
        "mc-system",
        "-f",
        str(values_file),
        *extra,
    )


def _render(helm: Path, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    result = _helm(helm, "template", values, tmp_path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_passes(helm: Path, tmp_path: Path, mode: str) -> None:
    result = _helm(helm, "lint", MODES[mode], tmp_path, "--strict")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_every_rendered_object_carries_the_app_kubernetes_io_labels(
    helm: Path, tmp_path: Path, mode: str
) -> None:
    objects = _render(helm, MODES[mode], tmp_path)
    assert objects
    for obj in objects:
        labels = obj["metadata"]["labels"]
        for key in ("name", "instance", "version", "component", "part-of", "managed-by"):
            assert f"app.kubernetes.io/{key}" in labels, (obj["kind"], key)


@pytest.mark.parametrize("mode", MODES)
def test_deployment_pods_match_their_selector(helm: Path, tmp_path: Path, mode: str) -> None:
    deployment = _one(_render(helm, MODES[mode], tmp_path), "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_default_runs_one_replica_recreated_on_upgrade(helm: Path, tmp_path: Path) -> None:
    deployment = _one(_render(helm, {}, tmp_path), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not any("--peering" in a for a in _container(_render(helm, {}, tmp_path))["args"])


def test_pod_and_container_are_locked_down(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, {}, tmp_path)
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(objects)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["runAsGroup"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root still needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in _container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - a mount path, not a temp file


def test_container_has_probes_resources_and_the_image_everywhere(
    helm: Path, tmp_path: Path
) -> None:
    values = {"image": {"repository": "registry.example/mc", "tag": "1.2.3"}}
    container = _container(_render(helm, values, tmp_path))
    assert container["image"] == "registry.example/mc:1.2.3"
    assert "--drill-image=registry.example/mc:1.2.3" in container["args"]
    assert {"name": "MODELCANARY_IMAGE", "value": "registry.example/mc:1.2.3"} in container["env"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert "--metrics-port=8000" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probes"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "probes": 8080}
    assert set(container["resources"]) == {"requests", "limits"}


def test_image_tag_defaults_to_the_chart_app_version(helm: Path, tmp_path: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert _container(_render(helm, {}, tmp_path))["image"].endswith(f":{app_version}")


def test_cluster_mode_watches_every_namespace(helm: Path, tmp_path: Path) -> None:
    args = _container(_render(helm, {"watchNamespaces": ["ignored"]}, tmp_path))["args"]
    assert args[0] == "run"
    assert not any(a.startswith("--namespace") for a in args)


def test_namespaced_mode_passes_one_namespace_flag_per_namespace(
    helm: Path, tmp_path: Path
) -> None:
    args = _container(_render(helm, MODES["namespaced"], tmp_path))["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]


def test_ha_runs_two_peered_replicas(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, MODES["ha"], tmp_path)
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = _container(objects)
    assert "--peering=release-modelcanary" in container["args"]
    assert "--peering-lifetime=60" in container["args"]
    # kopf names each replica after its pod in the peering status.
    pod_id = next(e for e in container["env"] if e["name"] == "POD_ID")
    assert pod_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    peering = _one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "release-modelcanary"
    crds = {o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition"}
    assert crds == {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}


def test_namespaced_ha_peers_through_a_kopfpeering_in_each_namespace(
    helm: Path, tmp_path: Path
) -> None:
    objects = _render(helm, MODES["ha-namespaced"], tmp_path)
    peerings = [o for o in objects if o["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering"]


def test_ha_can_leave_the_peering_crds_to_someone_else(helm: Path, tmp_path: Path) -> None:
    values = {"ha": {"enabled": True, "installPeeringCRDs": False}}
    objects = _render(helm, values, tmp_path)
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]


def test_metrics_service_is_on_by_default_and_can_be_turned_off(helm: Path, tmp_path: Path) -> None:
    service = _one(_render(helm, {}, tmp_path), "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    off = _render(helm, {"metrics": {"service": {"enabled": False}}}, tmp_path)
    assert not [o for o in off if o["kind"] == "Service"]


def _operator_memo(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the operator's own ``run`` parser makes of the rendered args (kopf not started)."""
    import kopf  # noqa: PLC0415

    from modelcanary.__main__ import main  # noqa: PLC0415

    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs["memo"]))
    assert main(args) == 0
    return seen


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, (["--api-qps=100", "--api-burst=200"], (100.0, 200)), id="default"),
        pytest.param(
            {"apiRateLimit": {"qps": 2.5, "burst": 7}},
            (["--api-qps=2.5", "--api-burst=7"], (2.5, 7)),
            id="set",
        ),
        pytest.param(
            {"apiRateLimit": {"qps": 1000000, "burst": 5000}},
            (["--api-qps=1e+06", "--api-burst=5000"], (1e6, 5000)),
            id="large",
        ),
        pytest.param(
            {"apiRateLimit": {"enabled": False}}, (["--no-api-rate-limit"], None), id="off"
        ),
    ],
)
def test_api_rate_limit_values_reach_the_operator_as_flags(
    helm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, Any],
    expected: tuple[list[str], tuple[float, int] | None],
) -> None:
    flags, limit = expected
    args = _container(_render(helm, values, tmp_path))["args"]
    assert [a for a in args if "api-" in a] == flags
    assert _operator_memo(args, monkeypatch)["api_rate_limit"] == limit


@pytest.mark.parametrize(("values", "slots"), [({}, 8), ({"maxConcurrentPasses": 3}, 3)])
def test_max_concurrent_passes_reaches_the_operator_as_a_flag(
    helm: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, Any],
    slots: int,
) -> None:
    args = _container(_render(helm, values, tmp_path))["args"]
    assert f"--max-concurrent-passes={slots}" in args
    assert _operator_memo(args, monkeypatch)["max_concurrent_passes"] == slots


def test_monitoring_is_off_by_default(helm: Path, tmp_path: Path) -> None:
    kinds = {o["kind"] for o in _render(helm, {}, tmp_path)}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def test_monitoring_renders_scrape_alerts_and_dashboard(helm: Path, tmp_path: Path) -> None:
    objects = _render(helm, MODES["monitoring"], tmp_path)
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rules = _one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert "increase(modelcanary_rollbacks_total[10m]) > 0" in exprs.values()
    assert "increase(modelcanary_drill_failures_total[1h]) > 0" in exprs.values()
    assert "time() - modelcanary_drill_last_success_timestamp > 691200" in exprs.values()
    stuck = next(r for r in rules if "NoData" in r["expr"])
    assert stuck["for"] == "15m"
    # A broken query is its own alert, not a slow "stuck" one: waiting will not fix it.
    assert exprs["ModelCanaryAnalysisQueryError"] == (
        'modelcanary_analysis_outcome{outcome="Error"} == 1'
    )
    dashboard = _one(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    body = yaml.safe_load(dashboard["data"]["modelcanary.json"])
    shown = " ".join(t["expr"] for p in body["panels"] for t in p["targets"])
    for metric in (
        "modelcanary_canary_weight_percent",
        "modelcanary_analysis_value",
        "modelcanary_analysis_verdict",
        "modelcanary_rollbacks_total",
        "modelcanary_drill_failures_total",
        "modelcanary_drill_last_success_timestamp",
    ):
        assert metric in shown


def test_alert_rules_are_valid_promql_for_prometheus(helm: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the prometheus package that make test installs"
    rule = _one(_render(helm, MODES["monitoring"], tmp_path), "PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(rules_file.read_text().replace("increase(", "increase((", 1))
    refused = subprocess.run(
        [promtool, "check", "rules", str(broken)], capture_output=True, check=False
    )
    assert refused.returncode != 0


def test_no_successful_drill_window_follows_its_value(helm: Path, tmp_path: Path) -> None:
    values = {"monitoring": {"prometheusRule": {"enabled": True, "noSuccessfulDrillDays": 2}}}
    rules = _one(_render(helm, values, tmp_path), "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert "time() - modelcanary_drill_last_success_timestamp > 172800" in [
        r["expr"] for r in rules
    ]


BAD_VALUES = [
    pytest.param({"replicaCount": -1}, "/replicaCount", id="negative-replicas"),
    pytest.param({"mode": "everywhere"}, "/mode", id="unknown-mode"),
    pytest.param({"image": {"tag": "bad tag!"}}, "/image/tag", id="malformed-tag"),
    pytest.param({"mode": "namespaced"}, "/watchNamespaces", id="namespaced-without-namespaces"),
    pytest.param({"watchNamespaces": ["Not_A_Label"]}, "/watchNamespaces/0", id="bad-namespace"),
    pytest.param({"ha": {"enabled": True, "replicas": 1}}, "/ha/replicas", id="ha-one-replica"),
    pytest.param({"apiRateLimit": {"qps": 0}}, "/apiRateLimit/qps", id="zero-qps"),
    pytest.param({"maxConcurrentPasses": 0}, "/maxConcurrentPasses", id="zero-passes"),
    pytest.param({"apiRateLimit": {"burst": 0}}, "/apiRateLimit/burst", id="zero-burst"),
    pytest.param({"apiRateLimit": {"burst": 1.5}}, "/apiRateLimit/burst", id="fractional-burst"),
    pytest.param({"replicas": 2}, "replicas", id="unknown-key"),
    pytest.param({"replicaCount": 2}, "replicaCount", id="two-replicas-without-peering"),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES)
@pytest.mark.parametrize("command", ["template", "lint"])
def test_bad_values_are_refused_naming_the_value(
    helm: Path, tmp_path: Path, command: str, values: dict[str, Any], named: str
) -> None:
    result = _helm(helm, command, values, tmp_path)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
