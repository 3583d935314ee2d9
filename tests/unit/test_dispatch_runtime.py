"""Sharded mode's runtime, its parts replaced by fakes: a graceful stop ends the Lease
loop first, then every object loop, and only then releases the Leases, so no other
replica takes a shard while a loop here still acts."""

from __future__ import annotations

import asyncio

import pytest

from modelcanary.dispatch.drill_loop import DrillWork
from modelcanary.dispatch.loops import MODEL_DEPLOYMENT, ObjectKey, ObjectLoop
from modelcanary.dispatch.model_loop import ModelDeploymentWork
from modelcanary.dispatch.runtime import ShardedRuntime
from modelcanary.dispatch.slots import PassSlots
from tests.unit.fake_kube import FakeKube

pytestmark = pytest.mark.unit


def test_a_graceful_stop_ends_the_loops_before_the_leases_are_released() -> None:
    async def test() -> None:
        events: list[str] = []
        leases_running = asyncio.Event()

        async def lease_rounds() -> None:
            leases_running.set()
            try:
                await asyncio.Event().wait()
            finally:
                events.append("lease loop ended")

        async def release() -> None:
            events.append("leases released")

        async def watch() -> None:
            await asyncio.Event().wait()

        async def model_loop(loop: ObjectLoop) -> None:
            try:
                await loop.stopping.wait()
            finally:
                events.append("object loop ended")

        async def unused(*_: object) -> float:
            raise AssertionError("no pass in this test")

        runtime = ShardedRuntime(
            FakeKube().api(),
            lease_namespace="ops",
            identity="replica-a",
            shards=1,
            namespaces=None,
            model_work=ModelDeploymentWork(
                read=lambda _ns, _name: None,
                one_pass=unused,  # type: ignore[arg-type]
                give_back=unused,  # type: ignore[arg-type]
                resource=lambda _obj: None,  # type: ignore[arg-type,return-value]
                slots=PassSlots(1),
            ),
            drill_work=DrillWork(one_pass=unused),
        )
        runtime.manager.run = lease_rounds  # type: ignore[method-assign]
        runtime.manager.release = release  # type: ignore[method-assign]
        runtime.dispatcher.owns = lambda _namespace, _name: True  # the shard is held
        runtime.dispatcher.run_loops[MODEL_DEPLOYMENT] = model_loop
        runtime.watcher.run = watch  # type: ignore[method-assign]
        runtime.start()
        await asyncio.wait_for(leases_running.wait(), timeout=5)
        runtime.dispatcher.observed(ObjectKey(MODEL_DEPLOYMENT, "ns", "m"), ("ns", "m"))
        assert runtime.dispatcher.running()
        await asyncio.wait_for(runtime.stop(), timeout=5)
        assert events == ["lease loop ended", "object loop ended", "leases released"]

    asyncio.run(test())
