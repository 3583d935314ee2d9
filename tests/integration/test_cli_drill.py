"""``modelcanary drill create`` against the real API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kr8s
import pytest

from e2e.harness import ControlPlane
from e2e.harness.kubernetes import list_objects
from tests.api_cases import valid_model_deployment
from tests.cli import run_modelcanary

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, kubeconfig: Path | None) -> subprocess.CompletedProcess[str]:
    return run_modelcanary("drill", "create", *args, kubeconfig=kubeconfig)


def test_drill_create_makes_one_drill_for_an_existing_model_deployment(
    control_plane: ControlPlane, modelcanary_crds: list[str], k8s: kr8s.Api, namespace: str
) -> None:
    manifest = valid_model_deployment("fraud")
    manifest["metadata"]["namespace"] = namespace
    status, body = control_plane.request(
        "POST", f"/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/modeldeployments", manifest
    )
    assert status == 201, body
    done = cli("fraud", "--mode", "live", "-n", namespace, kubeconfig=control_plane.kubeconfig)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rollbackdrill.modelcanary.io/fraud-drill-")
    drills = list_objects(k8s, "rollbackdrills.modelcanary.io", namespace=namespace)
    assert len(drills) == 1
    assert drills[0].raw["spec"] == {"modelDeployment": "fraud", "mode": "live", "timeout": "10m"}
    assert drills[0].raw["metadata"]["labels"]["modelcanary.io/drill-source"] == "manual"


def test_drill_create_for_an_unknown_model_deployment_fails_clearly(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    done = cli("nope", "-n", namespace, kubeconfig=control_plane.kubeconfig)
    assert done.returncode == 1
    assert f"modeldeployment nope not found in namespace {namespace}" in done.stderr


def test_drill_create_without_a_kubeconfig_fails_clearly() -> None:
    done = cli("fraud", kubeconfig=None)
    assert done.returncode == 1
    assert "error:" in done.stderr
    assert "Traceback" not in done.stderr


def test_drill_create_refuses_an_unknown_mode() -> None:
    done = cli("fraud", "--mode", "chaos", kubeconfig=None)
    assert done.returncode == 2
    assert "invalid choice: 'chaos'" in done.stderr
