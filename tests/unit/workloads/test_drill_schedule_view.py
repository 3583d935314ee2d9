"""A sharded loop's first look at a model without ``spec.drill`` asks the view, not
the API server, whether a drill schedule was left: no request when there is none,
the whole schedule removed when its CronJob is ours, nothing when it is someone
else's, and one GET while the view has not listed CronJobs yet."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.api.names import LABEL_MODEL
from modelcanary.drills.schedule import MANAGED_BY, drill_job_name
from modelcanary.view.store import CRONJOB, KINDS, Store
from modelcanary.view.watch import View
from modelcanary.workloads.drill_schedule import remove_drill_schedule
from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit

NS, MD = "ns", "fraud"
NAME = drill_job_name(MD)
PATHS = {
    "CronJob": f"/apis/batch/v1/namespaces/{NS}/cronjobs/{NAME}",
    "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/{NAME}",
    "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/{NAME}",
    "ServiceAccount": f"/api/v1/namespaces/{NS}/serviceaccounts/{NAME}",
}


def scheduled(kind: str, *, ours: bool = True) -> dict[str, Any]:
    owner = {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": MD,
        "uid": "u1",
        "controller": True,
    }
    return {
        "kind": kind,
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": f"uid-{kind}",
            "labels": {**MANAGED_BY, LABEL_MODEL: MD} if ours else {LABEL_MODEL: MD},
            "ownerReferences": [owner] if ours else [],
        },
    }


def cluster(*, ours: bool = True) -> FakeKube:
    kube = FakeKube()
    for kind, path in PATHS.items():
        kube.put(path, scheduled(kind, ours=ours))
    return kube


def listed(cronjobs: list[dict[str, Any]]) -> Store:
    store = Store()
    for kind in KINDS:
        store.replace(kind, cronjobs if kind is CRONJOB else [], listed_at="1")
    return store


def remove(kube: FakeKube, store: Store) -> bool:
    async def main() -> bool:
        api = kube.api()
        return await remove_drill_schedule(
            api, md_name=MD, namespace=NS, only_if_scheduled=True, view=View(api, store)
        )

    return asyncio.run(main())


def test_no_cronjob_in_the_view_sends_no_request() -> None:
    kube = FakeKube()
    assert not remove(kube, listed([]))
    assert kube.requests == []


def test_our_cronjob_in_the_view_removes_the_whole_schedule() -> None:
    kube = cluster()
    assert remove(kube, listed([scheduled("CronJob")]))
    deleted = [request.path for request in kube.requests if request.method == "DELETE"]
    assert deleted == list(PATHS.values())  # the CronJob first, as removal always goes
    assert kube.objects == {}


def test_someone_elses_cronjob_of_that_name_is_left_alone_unread() -> None:
    kube = cluster(ours=False)
    assert not remove(kube, listed([scheduled("CronJob", ours=False)]))
    assert kube.requests == []
    assert len(kube.objects) == len(PATHS)


def test_before_the_view_has_listed_cronjobs_one_get_answers() -> None:
    kube = FakeKube()
    assert not remove(kube, Store())
    assert [(r.method, r.path) for r in kube.requests] == [("GET", PATHS["CronJob"])]
