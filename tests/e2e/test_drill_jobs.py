"""A ModelDeployment's scheduled drill, run end to end on the full tier.

The CronJob and its RBAC come from the real builders; a Job is started from
the CronJob as ``kubectl create job --from`` would; the real Job controller
makes the Pod and the scheduler binds it; the JobPodRunner runs the Pod's
``modelcanary drill create`` with a token of the drill's ServiceAccount. No
operator runs: what is checked is what one scheduled run does on its own,
and that the ServiceAccount it runs as can do that and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
from kr8s.objects import CronJob, Job, Pod, Secret, new_class, object_from_spec

from e2e.dataplane.jobs import (
    INSTANTIATE_ANNOTATION,
    JobPodRunner,
    job_from_cronjob,
    trigger_cronjob,
)
from e2e.harness import ControlPlane
from e2e.harness.kubernetes import list_objects
from modelcanary.api.modeldeployment import (
    DrillSchedule,
)
from modelcanary.drills.schedule import (
    build_drill_cronjob_spec,
    build_drill_rbac_specs,
    drill_job_name,
)

pytestmark = pytest.mark.e2e

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)
RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)
SelfSubjectReview = new_class("SelfSubjectReview.authentication.k8s.io/v1", namespaced=False)

MD = "fraud-detector"
ACCOUNT = drill_job_name(MD)
RUN_TIMEOUT = 60.0
# Once a year, at a minute no test run is likely to straddle: the real CronJob
# controller must not start a Job of its own while a test counts runs.
SCHEDULE = "17 3 1 1 *"


def _model_deployment(namespace: str) -> dict[str, Any]:
    """The least that passes admission, plus a warm drill schedule."""
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": MD, "namespace": namespace},
        "spec": {
            "predictor": {
                "model": {"name": "fraud", "version": "1.0.0", "uri": "s3://models/fraud/1.0.0"},
                "template": {
                    "spec": {"containers": [{"name": "server", "image": "example.invalid/m:1"}]}
                },
            },
            "traffic": {"replicas": {}},
            "strategy": {"steps": [{"setWeight": 100}]},
            "drill": {"schedule": SCHEDULE, "mode": "warm"},
        },
    }


def _install_drill_schedule(k8s: kr8s.Api, namespace: str) -> dict[str, Any]:
    """Create the ModelDeployment, then its drill ServiceAccount, Role, RoleBinding and
    CronJob as the operator would; returns the CronJob as the API server stored it.

    The owner references carry the ModelDeployment's real uid: the garbage
    collector runs on this tier and deletes objects whose owner is missing.
    """
    manifest = _model_deployment(namespace)
    md = ModelDeployment(manifest, api=k8s)
    md.create()
    schedule = DrillSchedule.model_validate(manifest["spec"]["drill"])
    specs = [
        *build_drill_rbac_specs(md_name=MD, md_uid=md.metadata.uid, namespace=namespace),
        build_drill_cronjob_spec(
            md_name=MD,
            md_uid=md.metadata.uid,
            namespace=namespace,
            drill=schedule,
            image="modelcanary:e2e",
        ),
    ]
    for spec in specs:
        object_from_spec(spec, api=k8s).create()
    return dict(CronJob.get(ACCOUNT, namespace=namespace, api=k8s).raw)


@pytest.fixture
def runner(
    full_control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[JobPodRunner]:
    with JobPodRunner(
        full_control_plane, namespace, workdir=tmp_path / "jobs", run_timeout=RUN_TIMEOUT
    ) as started:
        yield started


def _status(error: kr8s.ServerError) -> int | None:
    return error.response.status_code if error.response is not None else None


def _create_job_with_args(k8s: kr8s.Api, cronjob: dict[str, Any], args: list[str]) -> str:
    """A Job of the drill CronJob whose container runs ``modelcanary`` with other args."""
    manifest = job_from_cronjob(cronjob)
    manifest["spec"]["template"]["spec"]["containers"][0]["args"] = args
    job = Job(manifest, api=k8s)
    job.create()
    return str(job.name)


def test_a_triggered_drill_job_creates_one_scheduled_rollback_drill(
    modelcanary_crds: list[str], k8s: kr8s.Api, namespace: str, runner: JobPodRunner
) -> None:
    cronjob = _install_drill_schedule(k8s, namespace)

    job_name = trigger_cronjob(k8s, namespace, ACCOUNT)

    job = Job.get(job_name, namespace=namespace, api=k8s).raw
    assert job["metadata"]["annotations"][INSTANTIATE_ANNOTATION] == "manual"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob",
        ACCOUNT,
        cronjob["metadata"]["uid"],
        True,
    )
    assert job["metadata"]["labels"]["modelcanary.io/model"] == MD

    [run] = runner.wait_for_runs(1, timeout=RUN_TIMEOUT)
    assert run.exit_code == 0, f"{run.error}\n{run.output}"
    assert run.job == job_name
    assert run.service_account == ACCOUNT
    assert list(run.argv) == [
        sys.executable,
        "-m",
        "modelcanary",
        "drill",
        "create",
        MD,
        "--mode",
        "warm",
        "--namespace",
        namespace,
        "--source",
        "schedule",
    ]
    # The Pod the runner ran is the one the real Job controller made.
    [pod] = list_objects(k8s, Pod, namespace=namespace, label_selector={"job-name": job_name})
    assert pod.name == run.pod
    assert pod.raw["spec"]["nodeName"].startswith("kwok-node-")

    drills = list_objects(
        k8s,
        RollbackDrill,
        namespace=namespace,
        label_selector={"modelcanary.io/drill-source": "schedule", "modelcanary.io/model": MD},
    )
    assert len(drills) == 1
    drill = drills[0].raw
    assert drill["spec"]["modelDeployment"] == MD
    assert drill["spec"]["mode"] == "warm"
    assert f"rollbackdrill.modelcanary.io/{drill['metadata']['name']} created (warm)" in run.output


def test_the_drill_service_account_can_create_drills_and_nothing_else(
    modelcanary_crds: list[str], k8s: kr8s.Api, namespace: str, runner: JobPodRunner
) -> None:
    cronjob = _install_drill_schedule(k8s, namespace)
    drill_args = ["drill", "create", MD, "--mode", "verify", "--source", "schedule"]

    # A drill for a ModelDeployment that does not exist: a clear error, no drill.
    _create_job_with_args(k8s, cronjob, ["drill", "create", "other-md", "--namespace", namespace])
    [missing] = runner.wait_for_runs(1, timeout=RUN_TIMEOUT)
    assert missing.exit_code == 1, missing.output
    assert f"modeldeployment other-md not found in namespace {namespace}" in missing.output

    # The credential the run had is the ServiceAccount's, and only what its Role grants.
    sa = kr8s.api(kubeconfig=str(missing.kubeconfig))
    identity = f"system:serviceaccount:{namespace}:{ACCOUNT}"
    review = SelfSubjectReview({"metadata": {}}, api=sa)
    review.create()
    assert review.raw["status"]["userInfo"]["username"] == identity
    # A GET by name, which the Role grants (kr8s's .get() is a LIST, which it does not).
    own = ModelDeployment({"metadata": {"name": MD, "namespace": namespace}}, api=sa)
    own.refresh()
    with pytest.raises(kr8s.ServerError) as refused:
        own.delete()
    assert _status(refused.value) == 403
    with pytest.raises(kr8s.ServerError) as refused:
        Job(job_from_cronjob(cronjob), api=sa).create()
    assert _status(refused.value) == 403
    with pytest.raises(kr8s.ServerError) as refused:
        list_objects(sa, Secret, namespace=namespace)
    assert _status(refused.value) == 403
    assert ModelDeployment.get(MD, namespace=namespace, api=k8s).metadata.uid == own.metadata.uid

    # The same ModelDeployment name in another namespace is out of reach.
    job = _create_job_with_args(k8s, cronjob, [*drill_args, "--namespace", "default"])
    [elsewhere] = [run for run in runner.wait_for_runs(2, timeout=RUN_TIMEOUT) if run.job == job]
    assert elsewhere.exit_code == 1, elsewhere.output
    assert "forbidden" in elsewhere.output
    assert identity in elsewhere.output

    assert list_objects(k8s, RollbackDrill, namespace=namespace) == []
