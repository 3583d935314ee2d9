"""The ModelDeployment's own finalizer (sharded mode): added and removed by a patch that
tests the list it read, so another controller's finalizer is never lost and a list that
moved since the read is left for the next pass."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.passes import ModelDeploymentResource as MDResource
from modelcanary.workloads.finalizer import FINALIZER, finalizer_ops, set_finalizer
from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit

PATH = "/apis/modelcanary.io/v1alpha1/namespaces/ns/modeldeployments/m"
OTHER = "example.com/keep-me"


def stored(kube: FakeKube, finalizers: list[str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "m", "namespace": "ns"}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    kube.put(
        PATH,
        {"apiVersion": "modelcanary.io/v1alpha1", "kind": "ModelDeployment", "metadata": metadata},
    )
    return kube.get(PATH)


def set_on(kube: FakeKube, read: dict[str, Any], *, keep: bool) -> bool:
    resource = MDResource(read, api=kube.api())
    return asyncio.run(set_finalizer(resource, read["metadata"], keep=keep))


@pytest.mark.parametrize(
    ("before", "keep", "after"),
    [
        (None, True, [FINALIZER]),
        ([OTHER], True, [OTHER, FINALIZER]),
        ([OTHER, FINALIZER], False, [OTHER]),
        ([FINALIZER], False, []),
    ],
)
def test_the_finalizer_is_added_and_removed_and_others_stay(
    before: list[str] | None, keep: bool, after: list[str]
) -> None:
    kube = FakeKube()
    read = stored(kube, before)
    assert set_on(kube, read, keep=keep)
    assert kube.get(PATH)["metadata"]["finalizers"] == after


def test_nothing_is_written_when_the_list_is_already_as_wanted() -> None:
    kube = FakeKube()
    assert set_on(kube, stored(kube, [FINALIZER]), keep=True)
    assert set_on(kube, stored(kube, None), keep=False)
    assert kube.writes() == []
    assert finalizer_ops({"finalizers": [OTHER]}, keep=False) == []


@pytest.mark.parametrize("before", [None, [OTHER]])
def test_a_list_that_moved_since_the_read_is_left_for_the_next_pass(
    before: list[str] | None,
) -> None:
    kube = FakeKube()
    read = stored(kube, before)
    moved = [OTHER, "example.com/late"]
    kube.put(PATH, {**kube.get(PATH), "metadata": {**read["metadata"], "finalizers": moved}})
    assert not set_on(kube, read, keep=True)
    assert kube.get(PATH)["metadata"]["finalizers"] == moved


def test_a_deleted_object_is_no_error() -> None:
    kube = FakeKube()
    read = stored(kube, [FINALIZER])
    del kube.objects[PATH]
    assert not set_on(kube, read, keep=False)
