"""The replicas router's shared Service: created without a read first, a user's left alone.

The view's watches select the operator's own Services by label. A Service the
store does not hold is either missing (a new ModelDeployment) or a user's,
named in ``traffic.replicas.service``; only a read can tell. The router
creates at once and reads only on a 409, and remembers a user's Service
so that later passes read it rather than try to create it again. Here kr8s's
HTTP goes to ``FakeKube``, which records every request.
"""

from __future__ import annotations

import asyncio

import pytest

from modelcanary.view.store import KINDS, SERVICE, Store
from modelcanary.view.watch import View
from tests.unit.fake_kube import FakeKube
from tests.unit.pass_world import NS, fraud_router

pytestmark = pytest.mark.unit

SERVICES = f"/api/v1/namespaces/{NS}/services"
USERS = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "fraud", "namespace": NS},
    "spec": {"selector": {"app": "fraud"}, "ports": [{"port": 80}]},
}


def synced_store() -> Store:
    store = Store()
    for kind in KINDS:
        store.replace(kind, [], listed_at="1")
    return store


def ensure(kube: FakeKube, store: Store) -> None:
    """One pass's ``ensure`` on the store's view (a new view per pass, as passes have)."""

    async def one_pass() -> None:
        await fraud_router(kube, View(kube.api(), store).for_pass()).ensure()

    asyncio.run(one_pass())


def sent(kube: FakeKube) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in kube.requests]


def test_a_new_models_service_is_created_without_a_read_first() -> None:
    kube, store = FakeKube(), synced_store()
    ensure(kube, store)
    assert sent(kube) == [("POST", SERVICES)]
    created = kube.get(f"{SERVICES}/fraud")
    assert created["metadata"]["ownerReferences"][0]["uid"] == "u1"
    # The answer is in the store: the next pass asks nothing.
    assert store.get(SERVICE, NS, "fraud") is not None
    kube.requests.clear()
    ensure(kube, store)
    assert sent(kube) == []


def test_a_users_service_is_read_after_the_409_and_left_as_it_is() -> None:
    kube, store = FakeKube(), synced_store()
    kube.put(f"{SERVICES}/fraud", USERS)
    users = kube.get(f"{SERVICES}/fraud")
    ensure(kube, store)
    assert sent(kube) == [("POST", SERVICES), ("GET", f"{SERVICES}/fraud")]
    assert kube.get(f"{SERVICES}/fraud") == users
    # Remembered: the next pass reads it, and tries no create.
    kube.requests.clear()
    ensure(kube, store)
    assert sent(kube) == [("GET", f"{SERVICES}/fraud")]
    assert kube.get(f"{SERVICES}/fraud") == users


def test_once_the_users_service_is_gone_ours_is_created() -> None:
    kube, store = FakeKube(), synced_store()
    kube.put(f"{SERVICES}/fraud", USERS)
    ensure(kube, store)
    del kube.objects[f"{SERVICES}/fraud"]
    kube.requests.clear()
    ensure(kube, store)
    assert sent(kube) == [("GET", f"{SERVICES}/fraud"), ("POST", SERVICES)]
    assert kube.get(f"{SERVICES}/fraud")["metadata"]["ownerReferences"][0]["uid"] == "u1"
    # And from then on the store holds it: nothing more is asked.
    kube.requests.clear()
    ensure(kube, store)
    assert sent(kube) == []


def test_before_the_watches_listed_services_the_router_reads_first() -> None:
    kube, store = FakeKube(), Store()
    kube.put(f"{SERVICES}/fraud", USERS)
    users = kube.get(f"{SERVICES}/fraud")
    ensure(kube, store)
    assert sent(kube) == [("GET", f"{SERVICES}/fraud")]
    assert kube.get(f"{SERVICES}/fraud") == users
