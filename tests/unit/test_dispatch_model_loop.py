"""A ModelDeployment's loop in sharded mode, over the fake API: the finalizer before the
first pass, the route given back and the finalizer removed on deletion, and nothing at
all done by a replica that does not own the object."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kr8s
import pytest

from modelcanary.dispatch.loops import MODEL_DEPLOYMENT, ObjectKey, ObjectLoop
from modelcanary.dispatch.model_loop import ModelDeploymentWork, run_model_deployment
from modelcanary.dispatch.slots import NextPass, PassSlots, Priority
from modelcanary.passes import ModelDeploymentResource as MDResource
from modelcanary.workloads.finalizer import FINALIZER
from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit

PATH = "/apis/modelcanary.io/v1alpha1/namespaces/ns/modeldeployments/m"
WAIT = 5.0


class RecordingSlots(PassSlots):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.priorities: list[Priority] = []

    def take(self, priority: Priority) -> Any:
        self.priorities.append(priority)
        return super().take(priority)


class World:
    """The fake API server, a watch that lags it on request, and the operator's side."""

    def __init__(self, **metadata: Any) -> None:
        self.kube = FakeKube()
        self.api = self.kube.api()
        self.kube.put(
            PATH,
            {
                "apiVersion": "modelcanary.io/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "m", "namespace": "ns", **metadata},
                "spec": {},
            },
        )
        self.lagging: dict[str, Any] | None = None
        """When set, what the watch still says (its echo of a write not yet arrived)."""
        self.owned = True
        self.passes: list[Mapping[str, Any]] = []
        self.given_back: list[str] = []
        self.give_back_failures = 0
        self.schedules: list[Any] = []
        self.firsts: list[bool] = []
        self.schedule_failures = 0
        self.passes_wanted = 1
        self.forgotten: list[str] = []
        self.next_passes: list[NextPass] = []
        """What the passes say of the next one, in turn (default: due at once)."""
        self.wake_after: set[int] = set()
        """The passes (counted from 1) after which a watch event wakes the loop."""
        self.slots = RecordingSlots(1)
        self.loop = ObjectLoop(ObjectKey(MODEL_DEPLOYMENT, "ns", "m"), ("ns", "m"), self.owns)

    def owns(self, namespace: str, name: str) -> bool:
        return self.owned

    def read(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        if self.lagging is not None:
            return self.lagging
        return self.kube.objects.get(PATH)

    async def one_pass(self, obj: Mapping[str, Any]) -> NextPass:
        self.passes.append(obj)
        if len(self.passes) >= self.passes_wanted:
            self.loop.stopping.set()
        if len(self.passes) in self.wake_after:
            self.loop.wake.set()
        return self.next_passes.pop(0) if self.next_passes else NextPass(0.0, Priority.DUE)

    async def schedule_drills(self, obj: Mapping[str, Any], *, first: bool) -> bool:
        self.schedules.append(obj["spec"].get("drill"))
        self.firsts.append(first)
        if self.schedule_failures:
            self.schedule_failures -= 1
            return False
        return True

    async def give_back(self, obj: Mapping[str, Any]) -> None:
        if self.give_back_failures:
            self.give_back_failures -= 1
            raise kr8s.ServerError("the route's PATCH failed")
        self.given_back.append(obj["metadata"]["name"])

    def run(self) -> None:
        asyncio.run(asyncio.wait_for(run_model_deployment(self.loop, self.work()), timeout=WAIT))

    def work(self) -> ModelDeploymentWork:
        return ModelDeploymentWork(
            read=self.read,
            one_pass=self.one_pass,
            give_back=self.give_back,
            resource=lambda obj: MDResource(dict(obj), api=self.api),
            slots=self.slots,
            schedule_drills=self.schedule_drills,
            retry_seconds=0.0,
            forget=lambda namespace, name, uid: self.forgotten.append(f"{namespace}/{name}/{uid}"),
        )

    def finalizers(self) -> list[str]:
        return list(self.kube.get(PATH)["metadata"].get("finalizers") or [])


def test_the_finalizer_is_added_before_the_first_pass_even_while_the_watch_lags() -> None:
    world = World()
    world.lagging = world.kube.get(PATH)  # the watch will not have the echo in time
    world.run()
    assert world.finalizers() == [FINALIZER]
    assert len(world.kube.writes()) == 1
    assert [obj["metadata"]["finalizers"] for obj in world.passes] == [[FINALIZER]]
    assert world.forgotten == ["ns/m/uid-m"]  # told to stop (a shard moving away): forgotten too
    # The finalizer's write and the first pass each took a slot.
    assert world.slots.priorities == [Priority.ROUTINE, Priority.ROUTINE]


async def at_the_slot(slots: PassSlots) -> None:
    """Return once something waits for a slot (each step of the loop is one yield)."""
    for _ in range(1000):
        if slots.waiting():
            return
        await asyncio.sleep(0)
    raise AssertionError("nothing came to wait for a slot")


def test_the_finalizer_write_waits_for_a_pass_slot() -> None:
    """1,000 new objects' finalizer writes at once, outside the slots, queued in the
    shared HTTP pool and cost a third of the ramp's CPU (sharded mode, bench-scale)."""
    world = World()

    async def main() -> None:
        async with world.slots.take(Priority.DUE):  # every slot busy
            running = asyncio.ensure_future(run_model_deployment(world.loop, world.work()))
            await asyncio.wait_for(at_the_slot(world.slots), timeout=WAIT)
            assert world.kube.writes() == []
        await asyncio.wait_for(running, timeout=WAIT)

    asyncio.run(main())
    assert world.finalizers() == [FINALIZER]


def test_a_deleted_object_gets_its_route_back_then_loses_the_finalizer() -> None:
    world = World(finalizers=[FINALIZER], deletionTimestamp="2026-01-01T00:00:00Z")
    world.give_back_failures = 1  # retried, never skipped
    world.run()
    assert world.given_back == ["m"]
    assert world.finalizers() == []
    assert world.passes == []
    assert world.forgotten == ["ns/m/uid-m"]  # what the reconciler kept for it is dropped


def test_a_deleted_object_without_our_finalizer_is_left_alone() -> None:
    world = World(finalizers=["example.com/other"], deletionTimestamp="2026-01-01T00:00:00Z")
    world.run()
    assert world.given_back == []
    assert world.kube.writes() == []


def test_a_replica_that_does_not_own_the_object_does_nothing() -> None:
    world = World()
    world.owned = False
    world.run()
    assert world.kube.writes() == []
    assert world.passes == []


def test_a_gone_object_ends_the_loop() -> None:
    world = World()
    del world.kube.objects[PATH]
    world.run()
    assert world.passes == []


def test_the_drill_schedule_is_applied_once_per_change_and_again_after_a_failure() -> None:
    world = World(finalizers=[FINALIZER])
    world.passes_wanted = 4
    world.schedule_failures = 1
    drill = {"schedule": "0 3 * * *"}
    world.kube.objects[PATH]["spec"]["drill"] = drill
    world.run()
    # The first apply failed and was tried again; then nothing until spec.drill changes.
    assert world.schedules == [drill, drill]
    # Both tries were the loop's first look: it had applied nothing yet.
    assert world.firsts == [True, True]
    world.loop.stopping.clear()
    world.passes_wanted = 6
    world.kube.objects[PATH]["spec"]["drill"] = None
    world.run()
    assert world.schedules == [drill, drill, None]
    assert world.firsts == [True, True, True]  # a new loop's first look again


def test_a_change_of_the_drill_within_a_loop_is_not_its_first_look() -> None:
    """Only a loop's first apply may settle for one GET when there is no ``spec.drill``;
    a change to none removes the whole schedule."""
    world = World(finalizers=[FINALIZER])
    world.passes_wanted = 3
    drill = {"schedule": "0 3 * * *"}
    world.kube.objects[PATH]["spec"]["drill"] = drill
    one_pass = world.one_pass

    async def dropping_the_drill_after_the_first_pass(obj: Mapping[str, Any]) -> NextPass:
        upcoming = await one_pass(obj)
        # A new version of the object, as the watch would store it.
        stored = world.kube.objects[PATH]
        world.kube.objects[PATH] = {**stored, "spec": {**stored["spec"], "drill": None}}
        return upcoming

    world.one_pass = dropping_the_drill_after_the_first_pass  # type: ignore[method-assign]
    world.run()
    assert world.schedules == [drill, None]
    assert world.firsts == [True, False]


def test_passes_are_due_when_woken_or_timed_by_a_rollout_and_routine_otherwise() -> None:
    world = World(finalizers=[FINALIZER])
    world.passes_wanted = 4
    world.next_passes = [
        NextPass(0.0, Priority.ROUTINE),  # the safety resync, but a watch event wakes it
        NextPass(0.0, Priority.ROUTINE),  # the safety resync
        NextPass(0.0, Priority.DUE),  # a pause ends
    ]
    world.wake_after = {1}
    world.run()
    # The first pass of an object at rest is routine (a start, a mass creation).
    assert world.slots.priorities == [
        Priority.ROUTINE,
        Priority.DUE,
        Priority.ROUTINE,
        Priority.DUE,
    ]


def test_the_first_pass_of_a_canary_in_flight_is_due() -> None:
    world = World(finalizers=[FINALIZER])
    body = world.kube.get(PATH)
    body["status"] = {"canaryRevision": "b"}
    world.kube.put(PATH, body)
    world.run()
    assert world.slots.priorities == [Priority.DUE]
