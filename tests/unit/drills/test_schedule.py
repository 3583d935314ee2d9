"""The drill schedule's CronJob and its least-privilege rights, as built."""

from __future__ import annotations

import pytest

from modelcanary.api.modeldeployment import DrillSchedule
from modelcanary.cli.drill import drill_manifest
from modelcanary.drills.schedule import (
    build_drill_cronjob_spec,
    build_drill_rbac_specs,
    drill_job_name,
)

pytestmark = pytest.mark.unit
SCHEDULE = DrillSchedule.model_validate({"schedule": "0 3 * * 1", "mode": "warm"})


def test_cronjob_runs_the_cli_from_the_operator_image_once_at_a_time() -> None:
    cronjob = build_drill_cronjob_spec(
        md_name="fraud", md_uid="u1", namespace="ml", drill=SCHEDULE, image="modelcanary:0.1.0"
    )
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 3 * * 1"
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "modelcanary:0.1.0"
    assert container["command"] + container["args"] == [
        "modelcanary",
        "drill",
        "create",
        "fraud",
        "--mode",
        "warm",
        "--namespace",
        "ml",
        "--source",
        "schedule",
    ]
    assert pod["serviceAccountName"] == "fraud-drill"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    owner = cronjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", "u1", True)


def test_cronjob_name_fits_the_52_character_limit() -> None:
    assert len(drill_job_name("m" * 63)) <= 52


def test_the_job_may_only_create_drills_and_read_its_model_deployment() -> None:
    account, role, binding = build_drill_rbac_specs(md_name="fraud", md_uid="u1", namespace="ml")
    assert account["kind"] == "ServiceAccount"
    assert role["rules"] == [
        {"apiGroups": ["modelcanary.io"], "resources": ["rollbackdrills"], "verbs": ["create"]},
        {"apiGroups": ["modelcanary.io"], "resources": ["modeldeployments"], "verbs": ["get"]},
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fraud-drill", "namespace": "ml"}
    ]


def test_drill_manifest_names_its_source() -> None:
    manifest = drill_manifest("fraud", "live", "schedule")
    assert manifest["metadata"]["generateName"] == "fraud-drill-"
    assert manifest["metadata"]["labels"]["modelcanary.io/drill-source"] == "schedule"
    assert manifest["spec"] == {"modelDeployment": "fraud", "mode": "live"}
