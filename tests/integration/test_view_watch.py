"""The view's watches against a real API server: create, update, delete, a kind that is
not served (and its CRD installed later), and a kube-apiserver restart in the middle.

Deployments are used because the fast tier serves them without any
controller; nothing here needs pods. Every wait is on a condition of the
store, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import Deployment

from e2e.harness import ControlPlane
from modelcanary.view.store import DEPLOYMENT, Kind, Owner, Store
from modelcanary.view.watch import MISSING_RETRY_SECONDS, Watcher

pytestmark = pytest.mark.integration

NOT_SERVED = Kind("Widget", "widgets.example.invalid", "v1", "widgets")


def deployment(namespace: str, name: str, model: str | None) -> dict[str, Any]:
    labels = {"app": name} | ({"modelcanary.io/model": model} if model else {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/c:1"}]},
            },
        },
    }


async def until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Wait for ``check`` to hold (the watcher runs meanwhile); fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


def test_the_watcher_follows_labelled_objects_and_survives_an_apiserver_restart(
    control_plane: ControlPlane, namespace: str
) -> None:
    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
        before = Deployment(deployment(namespace, "fraud-a", "fraud"), api=api)
        await before.create()
        store = Store()
        woken: list[set[Owner]] = []
        watcher = Watcher(
            api, store, woken.append, namespaces=[namespace], kinds=[DEPLOYMENT, NOT_SERVED]
        )
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(watcher.ready.wait(), timeout=30)
            # The first LIST: what existed before the watch, for its owner.
            assert store.get(DEPLOYMENT, namespace, "fraud-a") is not None
            assert (namespace, "fraud") in set().union(*woken)
            # A kind the API server does not serve is known to be empty, not an error.
            assert store.missing(NOT_SERVED)
            assert store.of_model(NOT_SERVED, namespace, "fraud") == []

            woken.clear()
            created = Deployment(deployment(namespace, "fraud-b", "fraud"), api=api)
            await created.create()
            await Deployment(deployment(namespace, "stranger", None), api=api).create()
            await until(
                lambda: store.get(DEPLOYMENT, namespace, "fraud-b") is not None, "the create"
            )
            assert [o for o in woken if (namespace, "fraud") in o]

            await created.patch({"spec": {"replicas": 2}})
            await until(
                lambda: (
                    (store.get(DEPLOYMENT, namespace, "fraud-b") or {})["spec"]["replicas"] == 2
                ),
                "the update",
            )
            await created.delete()
            await until(lambda: store.get(DEPLOYMENT, namespace, "fraud-b") is None, "the delete")
            # The selector kept the unlabelled Deployment out of the view.
            assert store.get(DEPLOYMENT, namespace, "stranger") is None
            names = [o["metadata"]["name"] for o in store.of_model(DEPLOYMENT, namespace, "fraud")]
            assert names == ["fraud-a"]

            # kube-apiserver goes away and comes back on the same port and data.
            await asyncio.to_thread(control_plane.stop_component, "kube-apiserver")
            try:
                await until(lambda: watcher.restarts > 0, "the watch to notice the outage")
                # A broken watch may miss events: the view stops answering for the kind.
                assert not store.synced(DEPLOYMENT)
            finally:
                await asyncio.to_thread(control_plane.start_component, "kube-apiserver")
            woken.clear()
            after = Deployment(deployment(namespace, "fraud-c", "fraud"), api=api)
            await until_created(after)
            await before.patch({"metadata": {"labels": {"modelcanary.io/model": "other"}}})
            await until(
                lambda: store.get(DEPLOYMENT, namespace, "fraud-c") is not None,
                "an object created after the restart",
                within=60,
            )
            await until(
                lambda: store.of_model(DEPLOYMENT, namespace, "other") != [],
                "a relabelled object to move to its new model",
                within=60,
            )
            assert [
                o["metadata"]["name"] for o in store.of_model(DEPLOYMENT, namespace, "fraud")
            ] == ["fraud-c"]
            assert store.synced(DEPLOYMENT)
            assert not task.done()  # the watcher never ends on its own
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())


async def until_created(obj: Deployment, within: float = 60.0) -> None:
    """Create ``obj`` once the API server answers again (it was just restarted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await obj.create()
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_an_unselected_watcher_tells_every_key_an_event_or_a_list_touched(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Sharded mode's watch of ModelDeployments: no label, so ``on_change`` (owners, from
    the label) hears nothing; ``on_keys`` hears of every object, listed or watched."""

    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
        await Deployment(deployment(namespace, "listed", None), api=api).create()
        store = Store()
        owners: list[set[Owner]] = []
        keys: list[set[tuple[str, str, str]]] = []
        told_gone: list[tuple[str, str, str]] = []
        """Keys told while the store no longer held their object: a deletion's."""

        def on_keys(_kind: object, changed: set[tuple[str, str, str]]) -> None:
            keys.append(changed)
            told_gone.extend(k for k in changed if store.get(DEPLOYMENT, k[1], k[2]) is None)

        watcher = Watcher(
            api,
            store,
            owners.append,
            namespaces=[namespace],
            kinds=[DEPLOYMENT],
            selector="",
            on_keys=on_keys,
        )
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(watcher.ready.wait(), timeout=30)
            listed = ("Deployment", namespace, "listed")
            assert any(listed in changed for changed in keys)
            assert store.get(DEPLOYMENT, namespace, "listed") is not None
            watched = Deployment(deployment(namespace, "watched", None), api=api)
            await watched.create()
            key = ("Deployment", namespace, "watched")
            await until(lambda: any(key in changed for changed in keys), "the create's key")
            assert store.get(DEPLOYMENT, namespace, "watched") is not None
            await watched.delete()
            # Not the first key told after the delete: kube-controller-manager's status
            # writes to the new Deployment may still arrive before the deletion does.
            await until(lambda: key in told_gone, "the delete's key")
            assert store.get(DEPLOYMENT, namespace, "watched") is None
            assert owners == []  # unlabelled: no owner was ever told
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())


def gadget_crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def test_a_kind_whose_crd_comes_later_is_picked_up_as_soon_as_it_is_served(
    control_plane: ControlPlane, namespace: str
) -> None:
    """Not a LIST of the kind every minute: a watch of its CRD, which sees it arrive."""
    group = f"{namespace}.example.com"
    gadgets = Kind("Gadget", group, "v1", "gadgets")
    crds_version, crds_url = "apiextensions.k8s.io/v1", "customresourcedefinitions"

    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(control_plane.kubeconfig))
        store = Store()
        watcher = Watcher(api, store, lambda _: None, namespaces=[namespace], kinds=[gadgets])
        task = asyncio.create_task(watcher.run())
        try:
            await asyncio.wait_for(watcher.ready.wait(), timeout=30)
            assert store.missing(gadgets)
            installed = time.monotonic()
            async with api.call_api(
                "POST", version=crds_version, url=crds_url, json=gadget_crd(group)
            ):
                pass
            gadget = {
                "apiVersion": f"{group}/v1",
                "kind": "Gadget",
                "metadata": {"name": "g1", "labels": {"modelcanary.io/model": "fraud"}},
            }
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:  # the API server serves the new kind once the CRD is established
                try:
                    async with api.call_api(
                        "POST",
                        version=f"{group}/v1",
                        namespace=namespace,
                        url="gadgets",
                        json=gadget,
                    ):
                        break
                except kr8s.ServerError:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            await until(
                lambda: store.get(gadgets, namespace, "g1") is not None,
                "the gadget in the view",
                within=MISSING_RETRY_SECONDS / 3,
            )
            assert not store.missing(gadgets)
            assert time.monotonic() - installed < MISSING_RETRY_SECONDS / 3
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(kr8s.ServerError):
                async with api.call_api(
                    "DELETE", version=crds_version, url=f"{crds_url}/gadgets.{group}"
                ):
                    pass
            # The namespace fixture's clean-up walks API discovery: it must not meet
            # the group half gone (listed in /apis, its version already 404).
            await until_gone_from_discovery(api, group)

    asyncio.run(main())


async def until_gone_from_discovery(api: kr8s.asyncio.Api, group: str) -> None:
    async def listed() -> bool:
        async with api.call_api("GET", base="/apis", version="") as response:
            names = {g.get("name") for g in response.json().get("groups") or []}
        assert "apps" in names, f"not the discovery document: {sorted(names)}"
        return group in names

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while await listed():
        if loop.time() > deadline:
            raise AssertionError(f"API group {group} still in discovery 60 s after its CRD went")
        await asyncio.sleep(0.2)
