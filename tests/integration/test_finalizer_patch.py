"""The pass-held finalizer's JSON patches against a real API server: the tests it sends
(the list read, or the resourceVersion when there is no list) are what the API server
checks, a moved list is refused with 422 and left alone, and an object being deleted
goes once the finalizer is removed. A ConfigMap stands in for the ModelDeployment: the
patches touch only metadata, the same for every kind."""

from __future__ import annotations

import asyncio

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import ConfigMap

from e2e.harness import ControlPlane
from modelcanary.workloads.finalizer import FINALIZER, set_finalizer

pytestmark = pytest.mark.integration

OTHER = "example.com/keep-me"


def test_the_finalizer_patches_hold_on_a_real_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
        cm = ConfigMap({"metadata": {"name": "m", "namespace": namespace}}, api=api)
        await cm.create()
        read = dict(cm.raw)
        assert await set_finalizer(cm, read["metadata"], keep=True)
        await cm.refresh()
        assert cm.raw["metadata"]["finalizers"] == [FINALIZER]

        # Another controller adds its own: a patch from the stale read is refused.
        stale = dict(cm.raw)
        await cm.patch({"metadata": {"finalizers": [FINALIZER, OTHER]}})
        assert not await set_finalizer(cm, stale["metadata"], keep=False)
        await cm.refresh()
        assert cm.raw["metadata"]["finalizers"] == [FINALIZER, OTHER]

        # Deleted: it stays until the finalizers go; ours goes, the other stays.
        await cm.delete()
        await cm.refresh()
        assert cm.raw["metadata"].get("deletionTimestamp")
        assert await set_finalizer(cm, dict(cm.raw)["metadata"], keep=False)
        await cm.refresh()
        assert cm.raw["metadata"]["finalizers"] == [OTHER]
        await cm.patch({"metadata": {"finalizers": []}})
        assert not await cm.exists()

        # With no list at all, the add tests the resourceVersion it read.
        fresh = ConfigMap({"metadata": {"name": "n", "namespace": namespace}}, api=api)
        await fresh.create()
        stale = dict(fresh.raw)
        await fresh.patch({"metadata": {"labels": {"moved": "yes"}}})
        assert not await set_finalizer(fresh, stale["metadata"], keep=True)
        await fresh.refresh()
        assert not fresh.raw["metadata"].get("finalizers")

    asyncio.run(main())
