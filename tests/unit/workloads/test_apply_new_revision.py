"""A revision the pass has just seen has no Deployment is created without a GET first.

Reading an object the pass already knows is missing doubled the requests of
every new revision (a GET answered 404, then the create). A create that finds
the object there after all (409: another pass, or a Service left behind by a
half-done one) still reads it and patches what differs, as before.
"""

from __future__ import annotations

import asyncio

import pytest

from modelcanary.api.modeldeployment import Predictor
from modelcanary.workloads import applier
from modelcanary.workloads.builders import OwnerRef, build_deployment_spec, build_service_spec
from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit

OWNER = OwnerRef(api_version="modelcanary.io/v1alpha1", kind="ModelDeployment", name="m", uid="u")
PREDICTOR = Predictor.model_validate(
    {
        "model": {"name": "m", "version": "1", "uri": "s3://m/1"},
        "template": {"spec": {"containers": [{"name": "s", "image": "s:1"}]}},
    }
)
DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"
SERVICES = "/api/v1/namespaces/ns/services"


def apply(kube: FakeKube, *, new: bool) -> applier.Applied:
    common = {"md_name": "m", "namespace": "ns", "revision": "abc"}
    deployment = build_deployment_spec(
        replicas=1, port=8080, predictor=PREDICTOR, role="stable", owner=OWNER, **common
    )
    service = build_service_spec(
        port=8080, predictor=PREDICTOR, role="stable", owner=OWNER, **common
    )
    return asyncio.run(applier.apply_revision(kube.api(), deployment, service, new=new))


def calls(kube: FakeKube) -> list[tuple[str, str]]:
    return sorted((r.method, r.path) for r in kube.requests)


def test_a_new_revision_is_created_in_one_request_per_object() -> None:
    kube = FakeKube()
    applied = apply(kube, new=True)
    assert (applied.deployment, applied.service) == ("created", "created")
    assert calls(kube) == sorted([("POST", DEPLOYMENTS), ("POST", SERVICES)])


def test_without_the_hint_each_object_is_read_first() -> None:
    kube = FakeKube()
    apply(kube, new=False)
    assert [method for method, _ in calls(kube)] == ["GET", "GET", "POST", "POST"]


def test_an_object_there_after_all_is_read_and_left_or_patched() -> None:
    kube = FakeKube()
    apply(kube, new=True)
    kube.requests.clear()
    again = apply(kube, new=True)
    assert (again.deployment, again.service) == ("unchanged", "unchanged")
    assert calls(kube) == sorted(
        [
            ("GET", f"{DEPLOYMENTS}/m-abc"),
            ("GET", f"{SERVICES}/m-abc"),
            ("POST", DEPLOYMENTS),
            ("POST", SERVICES),
        ]
    )
