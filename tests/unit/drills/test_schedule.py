"""The drill schedule's CronJob and its least-privilege rights, as built."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.api.modeldeployment import (
    DrillSchedule,
)
from modelcanary.api.names import model_label
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


DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
# What a ModelDeployment may be called: a DNS subdomain of up to 253 characters.
SUBDOMAIN_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?", fullmatch=True)
MD_NAMES = (
    st.lists(SUBDOMAIN_LABEL, min_size=1, max_size=8)
    .map(".".join)
    .filter(lambda name: len(name) <= 253)
)


def test_a_short_name_keeps_its_readable_job_name() -> None:
    assert drill_job_name("fraud") == "fraud-drill"


@given(MD_NAMES)
def test_any_model_deployment_name_gives_a_valid_job_name_and_label(md_name: str) -> None:
    """CronJobs allow 52 characters, labels 63, and neither allows every subdomain."""
    name = drill_job_name(md_name)
    assert len(name) <= 52, name
    assert DNS_1035_LABEL.fullmatch(name), name
    labels = build_drill_cronjob_spec(
        md_name=md_name, md_uid="u1", namespace="ml", drill=SCHEDULE, image="modelcanary:0.1.0"
    )["metadata"]["labels"]
    assert LABEL_VALUE.fullmatch(labels["modelcanary.io/model"])
    assert len(labels["modelcanary.io/model"]) <= 63


def test_long_names_that_share_a_prefix_get_different_jobs() -> None:
    first, second = "m" * 60 + "-a", "m" * 60 + "-b"
    assert drill_job_name(first) != drill_job_name(second)


def test_the_cronjob_is_labelled_like_everything_else_of_its_model() -> None:
    md_name = "fraud.scoring." + "x" * 80
    labels = build_drill_cronjob_spec(
        md_name=md_name, md_uid="u1", namespace="ml", drill=SCHEDULE, image="modelcanary:0.1.0"
    )["metadata"]["labels"]
    assert labels["modelcanary.io/model"] == model_label(md_name) != md_name


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
