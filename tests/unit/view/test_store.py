"""The view's store: newer wins, the model index follows labels, and every change names
the owners whose passes must wake. The wake routing maps those owners to daemons."""

from __future__ import annotations

from typing import Any

import pytest

from modelcanary.view.store import DEPLOYMENT, DRILL, ROUTE, Store, owner_of
from modelcanary.view.wake import WakeRoutes, owner_for

pytestmark = pytest.mark.unit


def obj(
    name: str, version: int | str, model: str | None = "fraud", ns: str = "ns"
) -> dict[str, Any]:
    labels = {"modelcanary.io/model": model} if model else {}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(version),
            "labels": labels,
        },
        "spec": {"replicas": int(str(version)) if str(version).isdigit() else 0},
    }


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]


def test_an_upsert_indexes_by_namespace_and_model_and_names_its_owner() -> None:
    store = Store()
    assert store.upsert(DEPLOYMENT, obj("fraud-a", 1)) == {("ns", "fraud")}
    assert store.upsert(DEPLOYMENT, obj("other-a", 2, model="other")) == {("ns", "other")}
    store.upsert(DEPLOYMENT, obj("fraud-b", 3, ns="elsewhere"))
    assert names(store.of_model(DEPLOYMENT, "ns", "fraud")) == ["fraud-a"]
    assert names(store.of_model(DEPLOYMENT, "elsewhere", "fraud")) == ["fraud-b"]
    assert store.of_model(DRILL, "ns", "fraud") == []
    assert store.get(DEPLOYMENT, "ns", "fraud-a") == obj("fraud-a", 1)
    assert store.get(DEPLOYMENT, "ns", "missing") is None


def test_an_older_version_never_replaces_a_newer_one() -> None:
    """The answer to our own write (rv 7) must survive the event still in flight (rv 6)."""
    store = Store()
    store.upsert(ROUTE, obj("route", 7))
    assert store.upsert(ROUTE, obj("route", 6)) == set()
    assert store.get(ROUTE, "ns", "route") == obj("route", 7)
    assert store.upsert(ROUTE, obj("route", 7)) == set()  # the echo of the same version
    assert store.upsert(ROUTE, obj("route", 8)) == {("ns", "fraud")}
    assert store.get(ROUTE, "ns", "route") == obj("route", 8)


def test_versions_that_are_not_integers_are_taken_in_arrival_order() -> None:
    store = Store()
    store.upsert(ROUTE, obj("route", "b"))
    store.upsert(ROUTE, obj("route", "a"))
    assert store.get(ROUTE, "ns", "route") == obj("route", "a")


def test_a_relabelled_object_moves_between_models_and_wakes_both() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("d", 1, model="fraud"))
    assert store.upsert(DEPLOYMENT, obj("d", 2, model="other")) == {
        ("ns", "fraud"),
        ("ns", "other"),
    }
    assert store.of_model(DEPLOYMENT, "ns", "fraud") == []
    assert names(store.of_model(DEPLOYMENT, "ns", "other")) == ["d"]


def test_a_delete_forgets_and_a_late_older_event_cannot_bring_it_back() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("d", 3))
    assert store.remove(DEPLOYMENT, obj("d", 5)) == {("ns", "fraud")}
    assert store.get(DEPLOYMENT, "ns", "d") is None
    assert store.upsert(DEPLOYMENT, obj("d", 4)) == set()
    assert store.get(DEPLOYMENT, "ns", "d") is None
    # Made again under the same name: a newer version is a new object.
    assert store.upsert(DEPLOYMENT, obj("d", 9)) == {("ns", "fraud")}
    assert store.get(DEPLOYMENT, "ns", "d") is not None


def test_a_copy_is_handed_out_so_a_reader_cannot_change_the_store() -> None:
    store = Store()
    store.upsert(DEPLOYMENT, obj("d", 1))
    mine = store.get(DEPLOYMENT, "ns", "d")
    assert mine is not None
    mine["spec"]["replicas"] = 99
    store.of_model(DEPLOYMENT, "ns", "fraud")[0]["spec"]["replicas"] = 98
    assert store.get(DEPLOYMENT, "ns", "d") == obj("d", 1)


def test_a_relist_is_the_whole_truth_and_wakes_only_what_differs() -> None:
    store = Store()
    assert not store.synced(DEPLOYMENT)
    store.upsert(DEPLOYMENT, obj("same", 1))
    store.upsert(DEPLOYMENT, obj("changed", 2, model="a"))
    store.upsert(DEPLOYMENT, obj("gone", 3, model="b"))
    store.upsert(DEPLOYMENT, obj("other-ns", 4, model="c", ns="x"))
    touched = store.replace(
        DEPLOYMENT,
        [obj("same", 1), obj("changed", 5, model="a"), obj("new", 6, model="d")],
        namespace="ns",
        listed_at="10",
    )
    assert touched == {("ns", "a"), ("ns", "b"), ("ns", "d")}
    assert store.synced(DEPLOYMENT)
    assert store.get(DEPLOYMENT, "ns", "gone") is None
    assert store.get(DEPLOYMENT, "x", "other-ns") is not None  # another namespace's watch


def test_a_relist_keeps_what_our_own_write_answered_after_the_list_was_taken() -> None:
    store = Store()
    store.upsert(ROUTE, obj("written-after", 12))
    store.upsert(ROUTE, obj("route", 11))
    store.replace(ROUTE, [obj("route", 9)], listed_at="10")
    assert store.get(ROUTE, "ns", "written-after") is not None
    assert store.get(ROUTE, "ns", "route") == obj("route", 11)


def test_a_kind_that_is_not_served_is_synced_and_empty() -> None:
    store = Store()
    store.upsert(ROUTE, obj("route", 1))
    assert store.mark_missing(ROUTE) == {("ns", "fraud")}
    assert store.synced(ROUTE)
    assert store.missing(ROUTE)
    assert store.of_model(ROUTE, "ns", "fraud") == []
    store.replace(ROUTE, [obj("route", 2)], listed_at="2")  # the CRD was installed
    assert not store.missing(ROUTE)
    assert names(store.of_model(ROUTE, "ns", "fraud")) == ["route"]


def test_owner_of_needs_a_namespace_and_the_model_label() -> None:
    assert owner_of(obj("d", 1)) == ("ns", "fraud")
    assert owner_of(obj("d", 1, model=None)) is None
    assert owner_of({"metadata": {"name": "d", "labels": {"modelcanary.io/model": "m"}}}) is None


def test_wake_routes_send_a_change_to_the_daemons_of_its_owner_only() -> None:
    routes = WakeRoutes()
    routes.register(owner_for("ns", "fraud"), "uid-1")
    routes.register(owner_for("ns", "other"), "uid-2")
    routes.register(owner_for("elsewhere", "fraud"), "uid-3")
    assert routes.targets({("ns", "fraud")}) == {"uid-1"}
    assert routes.targets({("ns", "fraud"), ("elsewhere", "fraud")}) == {"uid-1", "uid-3"}
    assert routes.targets({("ns", "nobody")}) == set()
    routes.unregister(owner_for("ns", "fraud"), "uid-1")
    assert routes.targets({("ns", "fraud")}) == set()
    routes.unregister(owner_for("ns", "fraud"), "uid-1")  # twice is harmless


def test_a_long_name_routes_by_the_label_value_its_objects_carry() -> None:
    long_name = "a." + "x" * 80
    owner = owner_for("ns", long_name)
    assert len(owner[1]) <= 63
    store, routes = Store(), WakeRoutes()
    routes.register(owner, "uid-long")
    touched = store.upsert(DEPLOYMENT, obj("d", 1, model=owner[1]))
    assert routes.targets(touched) == {"uid-long"}


def test_managed_fields_are_not_kept() -> None:
    store = Store()
    with_fields = obj("d", 1)
    with_fields["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    store.upsert(DEPLOYMENT, with_fields)
    kept = store.get(DEPLOYMENT, "ns", "d")
    assert kept is not None
    assert "managedFields" not in kept["metadata"]
    assert with_fields["metadata"]["managedFields"]  # the caller's object is untouched


def test_a_kind_whose_watch_broke_is_not_answered_for_until_listed_again() -> None:
    store = Store()
    store.replace(DEPLOYMENT, [obj("d", 1)], listed_at="1")
    store.mark_stale(DEPLOYMENT)
    assert not store.synced(DEPLOYMENT)
    store.replace(DEPLOYMENT, [obj("d", 2)], listed_at="2")
    assert store.synced(DEPLOYMENT)
