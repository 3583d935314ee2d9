"""The drill schedule's four objects against the real API server.

The owner is a real ModelDeployment (the project's CRDs installed), so the
ownerReferences the builders write point at an object that exists. Whether
the Role grants what a scheduled Job needs and nothing more is asked of the
API server's own RBAC authorizer with SubjectAccessReviews, not read off the
rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import kr8s
import kr8s.asyncio
import pytest
import yaml
from kr8s.asyncio.objects import APIObject, ConfigMap, CronJob, Role, RoleBinding, ServiceAccount

from e2e.harness import ControlPlane
from modelcanary.api.modeldeployment import (
    DrillSchedule,
)
from modelcanary.api.names import model_label
from modelcanary.drills.schedule import (
    build_drill_cronjob_spec,
    build_drill_rbac_specs,
    drill_job_name,
)
from modelcanary.workloads.applier import read
from modelcanary.workloads.drill_schedule import (
    DrillScheduleConflict,
    apply_drill_schedule,
    remove_drill_schedule,
)
from modelcanary.workloads.patches import NotOurs
from tests.api_cases import valid_model_deployment
from tests.cli import run_modelcanary

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

MD = "fraud"
NAME = drill_job_name(MD)
IMAGE = "example.invalid/modelcanary:1.0.0"
KINDS: tuple[type[APIObject], ...] = (ServiceAccount, Role, RoleBinding, CronJob)
T = TypeVar("T")


def drill(**changes: Any) -> DrillSchedule:
    return DrillSchedule.model_validate({"schedule": "0 3 * * 1", "mode": "verify", **changes})


def create_model_deployment(plane: ControlPlane, namespace: str, name: str = MD) -> str:
    """A real ModelDeployment to own everything; returns its uid.

    Real, because on the full tier (when e2e tests ran first in the session) the
    garbage collector deletes whatever points at an owner that does not exist.
    """
    manifest = valid_model_deployment(name)
    manifest["metadata"]["namespace"] = namespace
    status, body = plane.request(
        "POST", f"/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/modeldeployments", manifest
    )
    assert status == 201, body
    return str(body["metadata"]["uid"])


def run(plane: ControlPlane, body: Callable[[kr8s.asyncio.Api], Awaitable[T]]) -> T:
    async def main() -> T:
        return await body(await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig)))

    return asyncio.run(main())


async def apply(
    api: kr8s.asyncio.Api, namespace: str, md_uid: str, schedule: DrillSchedule, image: str = IMAGE
) -> None:
    await apply_drill_schedule(
        api, md_name=MD, md_uid=md_uid, namespace=namespace, drill=schedule, image=image
    )


async def body_of(api: kr8s.asyncio.Api, kind: type[APIObject], namespace: str) -> dict[str, Any]:
    found = await read(kind, api, namespace, NAME)
    assert found is not None, f"{kind.kind} {NAME} is missing"
    return found


async def versions(api: kr8s.asyncio.Api, namespace: str) -> dict[str, tuple[str, str]]:
    """kind -> (uid, resourceVersion) of each of the four objects."""
    found = {}
    for kind in KINDS:
        metadata = (await body_of(api, kind, namespace))["metadata"]
        found[kind.kind] = (metadata["uid"], metadata["resourceVersion"])
    return found


def record_writes(api: kr8s.asyncio.Api) -> list[str]:
    """Every request but a GET that ``api`` sends from now on, as "METHOD url".

    A no-op PATCH leaves the resourceVersion alone, so only this tells
    "wrote nothing" from "wrote the same thing again".
    """
    writes: list[str] = []
    send = api.call_api

    @contextlib.asynccontextmanager
    async def call_api(method: str = "GET", *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if method != "GET":
            writes.append(f"{method} {kwargs.get('url', '')}")
        async with send(method, *args, **kwargs) as response:
            yield response

    api.call_api = call_api  # type: ignore[method-assign]
    return writes


def container(cronjob: dict[str, Any]) -> dict[str, Any]:
    containers = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def allowed(
    plane: ControlPlane,
    namespace: str,
    verb: str,
    resource: str,
    group: str = "modelcanary.io",
    *,
    account: str = NAME,
) -> bool:
    """Whether the drill ServiceAccount may do ``verb`` on ``resource``, per the authorizer."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": resource,
            },
        },
    }
    status, body = plane.request(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review
    )
    assert status == 201, body
    return bool(body["status"].get("allowed"))


# --------------------------------------------------------------------------- apply


def test_first_apply_creates_the_four_objects_owned_by_the_model_deployment(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> dict[str, dict[str, Any]]:
        assert all([await read(kind, api, namespace, NAME) is None for kind in KINDS])
        await apply(api, namespace, md_uid, drill())
        return {kind.kind: await body_of(api, kind, namespace) for kind in KINDS}

    found = run(control_plane, body)
    for kind, obj in found.items():
        metadata = obj["metadata"]
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "modelcanary.io/v1alpha1",
                "kind": "ModelDeployment",
                "name": MD,
                "uid": md_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], kind
        assert metadata["labels"] == {
            "app.kubernetes.io/managed-by": "modelcanary",
            "modelcanary.io/model": MD,
        }, kind

    assert found["Role"]["rules"] == [
        {"apiGroups": ["modelcanary.io"], "resources": ["rollbackdrills"], "verbs": ["create"]},
        {"apiGroups": ["modelcanary.io"], "resources": ["modeldeployments"], "verbs": ["get"]},
    ]
    assert found["RoleBinding"]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": NAME,
    }
    assert found["RoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": NAME, "namespace": namespace}
    ]

    spec = found["CronJob"]["spec"]
    assert spec["schedule"] == "0 3 * * 1"
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert container(found["CronJob"])["image"] == IMAGE
    assert container(found["CronJob"])["args"] == [
        "drill", "create", MD, "--mode", "verify", "--namespace", namespace, "--source", "schedule"
    ]  # fmt: skip


def test_the_drill_service_account_may_create_drills_and_read_its_model_and_nothing_else(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)
    assert not allowed(control_plane, namespace, "create", "rollbackdrills")

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, drill())

    run(control_plane, body)
    assert allowed(control_plane, namespace, "create", "rollbackdrills")
    assert allowed(control_plane, namespace, "get", "modeldeployments")
    for verb, resource in [
        ("update", "modeldeployments"),
        ("patch", "modeldeployments"),
        ("delete", "modeldeployments"),
        ("delete", "rollbackdrills"),
        ("update", "rollbackdrills"),
    ]:
        assert not allowed(control_plane, namespace, verb, resource), (verb, resource)
    assert not allowed(control_plane, namespace, "create", "pods", group="")
    assert not allowed(control_plane, namespace, "get", "secrets", group="")
    assert not allowed(control_plane, namespace, "create", "jobs", group="batch")
    assert not allowed(control_plane, "default", "create", "rollbackdrills")


def service_account_kubeconfig(plane: ControlPlane, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the drill ServiceAccount, as the Job's Pod would."""
    token = plane.kubectl("create", "token", NAME, "-n", namespace).stdout.strip()
    cluster = yaml.safe_load(plane.kubeconfig.read_text())["clusters"][0]
    context = {"cluster": cluster["name"], "user": NAME, "namespace": namespace}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": NAME, "user": {"token": token}}],
        "contexts": [{"name": NAME, "context": context}],
        "current-context": NAME,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_what_the_scheduled_job_runs_succeeds_with_the_drill_service_accounts_rights(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> dict[str, Any]:
        await apply(api, namespace, md_uid, drill())
        return await body_of(api, CronJob, namespace)

    command = container(run(control_plane, body))
    kubeconfig = service_account_kubeconfig(control_plane, namespace, tmp_path / "kubeconfig")
    assert command["command"] == ["modelcanary"]
    done = run_modelcanary(*command["args"], kubeconfig=kubeconfig)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rollbackdrill.modelcanary.io/fraud-drill-")


def test_a_changed_drill_updates_the_cronjob_in_place(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, drill())
        before = await versions(api, namespace)
        writes = record_writes(api)
        changed = drill(schedule="30 4 * * *", mode="warm", suspend=True)
        await apply(api, namespace, md_uid, changed, image="example.invalid/modelcanary:1.1.0")
        assert writes == [f"PATCH cronjobs/{NAME}"]
        after = await versions(api, namespace)

        cronjob = await body_of(api, CronJob, namespace)
        assert after["CronJob"][0] == before["CronJob"][0], "the CronJob was replaced"
        assert after["CronJob"][1] != before["CronJob"][1]
        assert cronjob["spec"]["schedule"] == "30 4 * * *"
        assert cronjob["spec"]["suspend"] is True
        assert container(cronjob)["image"] == "example.invalid/modelcanary:1.1.0"
        assert container(cronjob)["args"][3:5] == ["--mode", "warm"]
        # The rights do not depend on the schedule: nothing was written to them.
        for kind in ("ServiceAccount", "Role", "RoleBinding"):
            assert after[kind] == before[kind], kind

        # And back: only the schedule this time.
        await apply(api, namespace, md_uid, drill(mode="warm", suspend=True), image=IMAGE)
        cronjob = await body_of(api, CronJob, namespace)
        assert cronjob["metadata"]["uid"] == before["CronJob"][0]
        assert cronjob["spec"]["schedule"] == "0 3 * * 1"
        assert container(cronjob)["image"] == IMAGE

    run(control_plane, body)


def test_applying_the_same_drill_again_writes_nothing(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)
    schedule = drill(mode="live", warm_weight=10, history_limit=3)

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, schedule)
        first = await versions(api, namespace)
        writes = record_writes(api)
        await apply(api, namespace, md_uid, schedule)
        await apply(api, namespace, md_uid, schedule)
        assert writes == []
        assert await versions(api, namespace) == first

    run(control_plane, body)


def test_a_label_someone_else_added_stays_and_a_removed_one_comes_back(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, drill())
        cronjob = CronJob({"metadata": {"name": NAME, "namespace": namespace}}, api=api)
        await cronjob.patch(
            [
                {"op": "add", "path": "/metadata/labels/team", "value": "risk"},
                {"op": "remove", "path": "/metadata/labels/modelcanary.io~1model"},
                {"op": "replace", "path": "/spec/schedule", "value": "15 * * * *"},
            ],
            type="json",
        )
        await apply(api, namespace, md_uid, drill())
        found = await body_of(api, CronJob, namespace)
        assert found["metadata"]["labels"]["team"] == "risk"
        assert found["metadata"]["labels"]["modelcanary.io/model"] == MD
        assert found["spec"]["schedule"] == "0 3 * * 1"

    run(control_plane, body)


# --------------------------------------------------------------------------- not ours


def foreign(kind: type[APIObject], namespace: str, owner_uid: str | None) -> dict[str, Any]:
    """What the builders would make, but someone else's: another controller, or none."""
    built = build_drill_rbac_specs(md_name=MD, md_uid="x", namespace=namespace)
    built.append(
        build_drill_cronjob_spec(
            md_name=MD, md_uid="x", namespace=namespace, drill=drill(), image=IMAGE
        )
    )
    manifests = {m["kind"]: m for m in built}
    manifest = copy.deepcopy(manifests[kind.kind])
    manifest["metadata"] = {"name": NAME, "namespace": namespace, "labels": {"team": "risk"}}
    if owner_uid is not None:
        manifest["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "theirs",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    if kind is Role:
        # A person's Role with the same name may grant far more than the drill's.
        manifest["rules"] = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    return manifest


@pytest.mark.parametrize("kind", KINDS, ids=[kind.kind for kind in KINDS])
@pytest.mark.parametrize("owned", [False, True], ids=["unowned", "controlled-by-another"])
def test_an_object_of_the_same_name_that_is_not_ours_is_refused_and_left_alone(
    control_plane: ControlPlane,
    modelcanary_crds: list[str],
    namespace: str,
    kind: type[APIObject],
    owned: bool,
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> None:
        owner_uid = None
        if owned:
            owner = ConfigMap({"metadata": {"name": "theirs", "namespace": namespace}}, api=api)
            await owner.create()
            owner_uid = owner.metadata.uid
        await kind(foreign(kind, namespace, owner_uid), api=api).create()
        before = await body_of(api, kind, namespace)

        with pytest.raises(DrillScheduleConflict, match=f"{kind.kind} {namespace}/{NAME}"):
            await apply(api, namespace, md_uid, drill())
        assert await body_of(api, kind, namespace) == before
        # Applied in order, so a refusal stops the pass before the CronJob.
        assert await read(CronJob, api, namespace, NAME) == (before if kind is CronJob else None)

        assert await remove_drill_schedule(api, md_name=MD, namespace=namespace) == (
            kind is not ServiceAccount
        )
        assert await body_of(api, kind, namespace) == before

    run(control_plane, body)


def test_an_object_of_ours_still_being_deleted_is_a_wait_not_a_conflict(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, drill())
        account = ServiceAccount({"metadata": {"name": NAME, "namespace": namespace}}, api=api)
        hold = [{"op": "add", "path": "/metadata/finalizers", "value": ["example.com/hold"]}]
        await account.patch(hold, type="json")
        await account.delete()

        with pytest.raises(NotOurs, match="is being deleted") as refused:
            await apply(api, namespace, md_uid, drill())
        assert not isinstance(refused.value, DrillScheduleConflict)

        await account.patch([{"op": "remove", "path": "/metadata/finalizers"}], type="json")
        await apply(api, namespace, md_uid, drill())
        assert (await body_of(api, ServiceAccount, namespace))["metadata"].get(
            "deletionTimestamp"
        ) is None

    run(control_plane, body)


# --------------------------------------------------------------------------- remove


def test_remove_deletes_the_four_objects_then_finds_nothing_to_delete(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    md_uid = create_model_deployment(control_plane, namespace)
    other_uid = create_model_deployment(control_plane, namespace, "other")

    async def body(api: kr8s.asyncio.Api) -> None:
        assert not await remove_drill_schedule(api, md_name=MD, namespace=namespace)
        await apply(api, namespace, md_uid, drill())
        assert await remove_drill_schedule(api, md_name=MD, namespace=namespace)
        for kind in KINDS:
            assert await read(kind, api, namespace, NAME) is None, kind.kind
        assert not await remove_drill_schedule(api, md_name=MD, namespace=namespace)
        # Another ModelDeployment's schedule in the same namespace is not touched.
        await apply_drill_schedule(
            api, md_name="other", md_uid=other_uid, namespace=namespace, drill=drill(), image=IMAGE
        )
        assert not await remove_drill_schedule(api, md_name=MD, namespace=namespace)
        assert await read(CronJob, api, namespace, drill_job_name("other")) is not None

    run(control_plane, body)


def test_a_removal_only_if_scheduled_reads_on_only_when_the_cronjob_is_there(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    """A sharded loop's first look at an object without ``spec.drill``: the CronJob
    decides. With it, the whole schedule goes; without it, nothing more is read or
    removed (what a removal cut short left runs no drill)."""
    md_uid = create_model_deployment(control_plane, namespace)

    async def body(api: kr8s.asyncio.Api) -> None:
        await apply(api, namespace, md_uid, drill())
        assert await remove_drill_schedule(
            api, md_name=MD, namespace=namespace, only_if_scheduled=True
        )
        for kind in KINDS:
            assert await read(kind, api, namespace, NAME) is None, kind.kind

        await apply(api, namespace, md_uid, drill())
        cronjob = await read(CronJob, api, namespace, NAME)
        assert cronjob is not None
        await CronJob(cronjob, api=api).delete()
        assert not await remove_drill_schedule(
            api, md_name=MD, namespace=namespace, only_if_scheduled=True
        )
        assert await read(ServiceAccount, api, namespace, NAME) is not None
        # A change of spec.drill to none removes what is left all the same.
        assert await remove_drill_schedule(api, md_name=MD, namespace=namespace)
        for kind in KINDS:
            assert await read(kind, api, namespace, NAME) is None, kind.kind

    run(control_plane, body)


def test_a_long_dotted_name_gets_its_schedule_and_a_job_that_may_create_its_drills(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str
) -> None:
    """A ModelDeployment may be called anything a DNS subdomain allows; its schedule must fit.

    Names over 63 characters do not fit a label value, and a dot cut off at
    the 46th character left a name no API server accepts.
    """
    long_name = "fraud.scoring.eu-west." + "x" * 70
    md_uid = create_model_deployment(control_plane, namespace, long_name)
    job_name = drill_job_name(long_name)

    async def body(api: kr8s.asyncio.Api) -> dict[str, Any]:
        await apply_drill_schedule(
            api, md_name=long_name, md_uid=md_uid, namespace=namespace, drill=drill(), image=IMAGE
        )
        found = await read(CronJob, api, namespace, job_name)
        assert found is not None
        for kind in KINDS:
            assert await read(kind, api, namespace, job_name) is not None, kind.kind
        return found

    cronjob = run(control_plane, body)
    assert cronjob["metadata"]["labels"]["modelcanary.io/model"] == model_label(long_name)
    assert container(cronjob)["args"][2] == long_name
    assert allowed(control_plane, namespace, "create", "rollbackdrills", account=job_name)
