"""The feed from the unselected watches to the dispatcher: which objects want a loop, whose
shard runs it, and which changes wake it (a person's, never the loop's own status writes)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from modelcanary.dispatch.feed import Feed, loop_owner
from modelcanary.dispatch.loops import MODEL_DEPLOYMENT, ROLLBACK_DRILL, Dispatcher, ObjectKey
from modelcanary.rollout.actions import ANNOTATION
from modelcanary.view import store as view
from modelcanary.view.store import Store
from modelcanary.view.wake import owner_for

pytestmark = pytest.mark.unit


class Recorder:
    """Stands in for the dispatcher: records what the feed asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ObjectKey, tuple[str, str] | None]] = []

    def observed(self, key: ObjectKey, owner: tuple[str, str]) -> None:
        self.calls.append(("observed", key, owner))

    def wake(self, key: ObjectKey) -> None:
        self.calls.append(("wake", key, None))

    async def forgotten(self, key: ObjectKey) -> None:
        self.calls.append(("forgotten", key, None))


def model_deployment(
    name: str, version: int, generation: int = 1, **metadata: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "resourceVersion": str(version),
            "generation": generation,
            **metadata,
        },
        "spec": {},
    }


def drill(name: str, version: int, md_name: str | None, phase: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name, "resourceVersion": str(version)},
        "spec": {"modelDeployment": md_name} if md_name else {},
        "status": {"phase": phase} if phase else {},
    }


def feed_with(store: Store) -> tuple[Feed, Recorder]:
    recorder = Recorder()
    return Feed(store, cast(Dispatcher, recorder)), recorder


def changed(feed: Feed, store: Store, kind: view.Kind, obj: dict[str, Any]) -> None:
    store.upsert(kind, obj)
    metadata = obj["metadata"]
    feed.keys_changed(kind, {(kind.kind, metadata["namespace"], metadata["name"])})


MD_A = ObjectKey(MODEL_DEPLOYMENT, "ns", "a")


def test_a_model_deployment_is_woken_by_a_person_never_by_its_own_status_writes() -> None:
    store = Store()
    feed, recorder = feed_with(store)
    changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 1))
    changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 2))  # a status write
    assert recorder.calls == [("observed", MD_A, ("ns", "a"))]
    changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 3, generation=2))
    annotated = model_deployment("a", 4, generation=2, annotations={ANNOTATION: "promote"})
    changed(feed, store, view.MODEL_DEPLOYMENT, annotated)
    deleting = model_deployment("a", 5, generation=2, deletionTimestamp="2026-01-01T00:00:00Z")
    changed(feed, store, view.MODEL_DEPLOYMENT, deleting)
    assert [call[0] for call in recorder.calls] == ["observed"] * 4


def test_an_older_event_does_not_wake_or_revive() -> None:
    store = Store()
    feed, recorder = feed_with(store)
    changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 5, generation=3))
    changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 4, generation=2))
    assert len(recorder.calls) == 1  # the store kept version 5: nothing changed


def test_a_deleted_object_and_a_finished_drill_want_no_loop() -> None:
    async def test() -> None:
        store = Store()
        feed, recorder = feed_with(store)
        changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 1))
        store.remove(view.MODEL_DEPLOYMENT, model_deployment("a", 2))
        feed.keys_changed(view.MODEL_DEPLOYMENT, {("ModelDeployment", "ns", "a")})
        await feed.drain()
        changed(feed, store, view.DRILL, drill("d", 3, "a", phase="Running"))
        changed(feed, store, view.DRILL, drill("d", 4, "a", phase="Succeeded"))
        await feed.drain()
        d = ObjectKey(ROLLBACK_DRILL, "ns", "d")
        assert recorder.calls == [
            ("observed", MD_A, ("ns", "a")),
            ("forgotten", MD_A, None),
            ("observed", d, ("ns", "a")),
            ("forgotten", d, None),
        ]

    asyncio.run(test())


def test_a_drill_is_run_by_its_model_deployments_shard() -> None:
    assert loop_owner(view.DRILL, drill("d", 1, "fraud")) == ("ns", "fraud")
    # No ModelDeployment named: some replica must still run it (to refuse it).
    assert loop_owner(view.DRILL, drill("d", 1, None)) == ("ns", "d")
    assert loop_owner(view.DRILL, drill("d", 1, "fraud", phase="Failed")) is None
    assert loop_owner(view.MODEL_DEPLOYMENT, model_deployment("m", 1)) == ("ns", "m")
    assert loop_owner(view.MODEL_DEPLOYMENT, None) is None


def test_a_change_to_a_model_deployments_objects_wakes_its_loop_until_it_is_gone() -> None:
    async def test() -> None:
        store = Store()
        feed, recorder = feed_with(store)
        changed(feed, store, view.MODEL_DEPLOYMENT, model_deployment("a", 1))
        recorder.calls.clear()
        feed.wake_owners({owner_for("ns", "a"), owner_for("ns", "stranger")})
        assert recorder.calls == [("wake", MD_A, None)]
        store.remove(view.MODEL_DEPLOYMENT, model_deployment("a", 2))
        feed.keys_changed(view.MODEL_DEPLOYMENT, {("ModelDeployment", "ns", "a")})
        await feed.drain()
        recorder.calls.clear()
        feed.wake_owners({owner_for("ns", "a")})
        assert recorder.calls == []

    asyncio.run(test())
