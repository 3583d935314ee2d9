"""The dispatcher: one loop per wanted and owned object, never two, and a lost shard's
loops ended (their pass finished, or cancelled after the grace) before the shard is
given up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelcanary.dispatch.loops import (
    MODEL_DEPLOYMENT,
    ROLLBACK_DRILL,
    Dispatcher,
    ObjectKey,
    ObjectLoop,
)

pytestmark = pytest.mark.unit

WAIT = 5.0
"""Every wait on a condition gives up after this: a hang fails the test, it never blocks."""


def md(name: str) -> ObjectKey:
    return ObjectKey(MODEL_DEPLOYMENT, "ns", name)


@dataclass
class Loops:
    """Fake per-object loops: count concurrent runs per key, passes, and ends."""

    owned: set[tuple[str, str]] = field(default_factory=set)
    concurrent: dict[ObjectKey, int] = field(default_factory=dict)
    most_concurrent: int = 0
    passes: dict[ObjectKey, int] = field(default_factory=dict)
    ended: list[ObjectKey] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """When set, each pass waits on it (a pass in progress when the stop comes)."""
    ignore_stop: bool = False
    crash_first: bool = False
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on every change above: what :func:`until` waits on."""

    def owns(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.owned

    async def run(self, loop: ObjectLoop) -> None:
        key = loop.key
        self.concurrent[key] = self.concurrent.get(key, 0) + 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent[key])
        self.progress.set()
        try:
            if self.crash_first and key not in self.passes:
                self.passes[key] = 0
                raise RuntimeError("a bug")
            while self.ignore_stop or loop.owns():
                if self.gate is not None:
                    await self.gate.wait()
                self.passes[key] = self.passes.get(key, 0) + 1
                self.progress.set()
                await loop.sleep(3600)
        finally:
            self.concurrent[key] -= 1
            self.ended.append(key)
            self.progress.set()


def dispatcher(loops: Loops, **kwargs: float) -> Dispatcher:
    return Dispatcher(
        loops.owns, {MODEL_DEPLOYMENT: loops.run, ROLLBACK_DRILL: loops.run}, **kwargs
    )


async def until(loops: Loops, condition: Callable[[], bool]) -> None:
    """Wait for ``condition``, judged again whenever a fake loop makes progress."""

    async def wait() -> None:
        while not condition():
            loops.progress.clear()
            await loops.progress.wait()

    await asyncio.wait_for(wait(), timeout=WAIT)


async def settle() -> None:
    """Let every task that is ready run as far as it can: nothing here waits on I/O,
    so what has not happened after this would not happen without a new event."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def test_only_owned_objects_get_a_loop_and_a_gained_shard_starts_them() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")})
        dispatch = dispatcher(loops)
        dispatch.observed(md("a"), ("ns", "a"))
        dispatch.observed(md("b"), ("ns", "b"))
        await until(loops, lambda: loops.passes.get(md("a")) == 1)
        assert dispatch.running() == {md("a")}
        loops.owned.add(("ns", "b"))
        await dispatch.ownership_changed({1}, set())
        await until(loops, lambda: loops.passes.get(md("b")) == 1)
        assert dispatch.running() == {md("a"), md("b")}
        await dispatch.close()
        assert dispatch.running() == frozenset()

    run(test)


def test_events_wake_the_running_loop_and_never_start_a_second() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")})
        dispatch = dispatcher(loops)
        for expected in (1, 2, 3):
            dispatch.observed(md("a"), ("ns", "a"))
            await until(loops, lambda n=expected: loops.passes.get(md("a")) == n)  # type: ignore[misc]
        dispatch.wake(md("a"))
        await until(loops, lambda: loops.passes.get(md("a")) == 4)
        assert loops.most_concurrent == 1
        await dispatch.close()

    run(test)


def test_a_lost_shard_lets_the_pass_in_progress_finish_before_the_change_returns() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")}, gate=asyncio.Event())
        dispatch = dispatcher(loops)
        dispatch.observed(md("a"), ("ns", "a"))
        await until(loops, lambda: loops.concurrent.get(md("a")) == 1)  # the pass waits on the gate
        loops.owned.clear()
        change = asyncio.create_task(dispatch.ownership_changed(set(), {0}))
        await settle()
        assert not change.done()  # the shard is not given up while a pass acts on it
        loops.gate.set()  # type: ignore[union-attr]
        await asyncio.wait_for(change, timeout=WAIT)
        assert loops.passes[md("a")] == 1  # the pass finished its writes
        assert loops.ended == [md("a")]
        assert dispatch.running() == frozenset()

    run(test)


def test_a_loop_that_does_not_stop_is_cancelled_after_the_grace() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")}, ignore_stop=True, gate=asyncio.Event())
        dispatch = dispatcher(loops, stop_grace=0.05)
        dispatch.observed(md("a"), ("ns", "a"))
        await until(loops, lambda: loops.concurrent.get(md("a")) == 1)
        loops.owned.clear()
        await asyncio.wait_for(dispatch.ownership_changed(set(), {0}), timeout=WAIT)
        assert loops.ended == [md("a")]  # cancelled: it ended before the change returned
        assert md("a") not in loops.passes

    run(test)


def test_a_drill_runs_where_its_model_deployment_is_owned() -> None:
    async def test() -> None:
        loops = Loops()
        dispatch = dispatcher(loops)
        drill = ObjectKey(ROLLBACK_DRILL, "ns", "drill-1")
        dispatch.observed(drill, ("ns", "a"))
        await settle()
        assert dispatch.running() == frozenset()
        loops.owned.add(("ns", "a"))
        await dispatch.ownership_changed({0}, set())
        await until(loops, lambda: dispatch.running() == {drill})
        await dispatch.forgotten(drill)  # finished: it wants no loop any more
        assert dispatch.running() == frozenset()
        assert loops.ended == [drill]

    run(test)


def test_an_object_seen_again_while_its_old_loop_drains_waits_for_it() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")}, gate=asyncio.Event())
        dispatch = dispatcher(loops)
        dispatch.observed(md("a"), ("ns", "a"))
        await until(loops, lambda: loops.concurrent.get(md("a")) == 1)
        forgetting = asyncio.create_task(dispatch.forgotten(md("a")))  # deleted...
        await settle()
        dispatch.observed(md("a"), ("ns", "a"))  # ...and created again under its name
        await settle()
        assert loops.most_concurrent == 1
        loops.gate.set()  # type: ignore[union-attr]
        await asyncio.wait_for(forgetting, timeout=WAIT)
        await until(loops, lambda: loops.passes.get(md("a")) == 2)  # the new object's loop
        assert loops.most_concurrent == 1
        await dispatch.close()

    run(test)


def test_a_crashed_loop_is_started_again_after_a_backoff() -> None:
    async def test() -> None:
        loops = Loops(owned={("ns", "a")}, crash_first=True)
        dispatch = dispatcher(loops, crash_backoff=0.01)
        dispatch.observed(md("a"), ("ns", "a"))
        await until(loops, lambda: loops.passes.get(md("a")) == 1)
        assert loops.ended == [md("a")]  # the crashed run ended; the second is running
        await dispatch.close()

    run(test)


def test_a_loop_that_ended_on_a_lapsed_shard_runs_again_once_it_is_renewed() -> None:
    """A late renewal makes owns() say no for a moment; the manager reports no change
    when the next renewal succeeds, so the dispatcher itself must start the loop
    again (else the object waits for its next spec change: found on a real API
    server). A lapse that becomes a loss is still stopped by ownership_changed."""

    async def test() -> None:
        loops = Loops(owned={("ns", "a")})
        dispatch = dispatcher(loops, lapse_poll=0.01)
        dispatch.observed(md("a"), ("ns", "a"))
        await until(loops, lambda: loops.passes.get(md("a")) == 1)
        loops.owned.clear()  # the lapse: the loop's next owns() ends it
        dispatch.wake(md("a"))
        await until(loops, lambda: loops.ended == [md("a")])
        await settle()
        assert dispatch.running() == {md("a")}  # waiting, not acting
        assert loops.passes[md("a")] == 1
        loops.owned.add(("ns", "a"))  # renewed: no ownership change is reported
        await until(loops, lambda: loops.passes.get(md("a")) == 2)
        assert loops.most_concurrent == 1
        # Lapsed again, and this time lost: the manager reports it.
        loops.owned.clear()
        dispatch.wake(md("a"))
        await until(loops, lambda: len(loops.ended) == 2)
        await dispatch.ownership_changed(set(), {0})
        assert dispatch.running() == frozenset()
        await dispatch.close()

    run(test)
