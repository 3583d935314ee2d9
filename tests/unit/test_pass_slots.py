"""The pass slots: a freed slot goes to the waiting pass of highest priority.

At N = 10,000 a first-come semaphore kept the passes that make objects Healthy
(woken by a Deployment becoming Available) behind every first pass: 4,621
Deployments were ready after 25 minutes and 148 objects Healthy (bench-scale).
"""

from __future__ import annotations

import asyncio

import pytest

from modelcanary.dispatch.slots import NextPass, PassSlots, Priority, first_pass_priority
from modelcanary.rollout.state import IDLE_SECONDS, POLL_SECONDS

pytestmark = pytest.mark.unit


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def hold(slots: PassSlots, gate: asyncio.Event) -> None:
    """Take a slot and keep it until ``gate`` opens."""
    async with slots.take(Priority.ROUTINE):
        await gate.wait()


def test_a_freed_slot_goes_to_a_due_pass_before_routine_ones_that_came_first() -> None:
    order: list[str] = []

    async def main() -> None:
        slots = PassSlots(1)
        gate = asyncio.Event()

        async def waiter(name: str, priority: Priority) -> None:
            async with slots.take(priority):
                order.append(name)
                await asyncio.sleep(0)

        first = asyncio.create_task(hold(slots, gate))
        await settle()
        tasks = [asyncio.create_task(waiter("first-pass-1", Priority.ROUTINE))]
        await settle()
        tasks.append(asyncio.create_task(waiter("first-pass-2", Priority.ROUTINE)))
        await settle()
        tasks.append(asyncio.create_task(waiter("woken", Priority.DUE)))
        await settle()
        tasks.append(asyncio.create_task(waiter("look", Priority.DUE)))
        await settle()
        assert slots.waiting() == 4
        gate.set()
        await asyncio.gather(first, *tasks)
        assert slots.in_use == 0
        assert slots.waiting() == 0

    asyncio.run(main())
    assert order == ["woken", "look", "first-pass-1", "first-pass-2"]


def test_never_more_passes_at_once_than_slots() -> None:
    running = 0
    most = 0

    async def main() -> None:
        slots = PassSlots(3)

        async def one(priority: Priority) -> None:
            nonlocal running, most
            async with slots.take(priority):
                running += 1
                most = max(most, running)
                await asyncio.sleep(0.001)
                running -= 1

        await asyncio.gather(*(one(Priority(i % 2)) for i in range(40)))
        assert slots.in_use == 0

    asyncio.run(main())
    assert most == 3


def test_a_cancelled_waiter_loses_no_slot() -> None:
    async def main() -> None:
        slots = PassSlots(1)
        gate = asyncio.Event()

        async def waiter() -> None:
            async with slots.take(Priority.DUE):
                pass

        held = asyncio.create_task(hold(slots, gate))
        await settle()
        gone = asyncio.create_task(waiter())
        await settle()
        gone.cancel()  # its object was deleted while it waited
        await settle()
        assert slots.waiting() == 0
        gate.set()
        await held
        assert slots.in_use == 0
        # Cancelled in the very step it is handed the slot: the slot is passed on.
        tasks: list[asyncio.Task[None]] = []

        async def release_then_cancel() -> None:
            async with slots.take(Priority.ROUTINE):
                await gate.wait()
            tasks[0].cancel()  # the release just handed it the slot; it has not run

        gate.clear()
        held = asyncio.create_task(release_then_cancel())
        await settle()
        tasks.append(asyncio.create_task(waiter()))
        tasks.append(asyncio.create_task(waiter()))
        await settle()
        gate.set()
        await held
        with pytest.raises(asyncio.CancelledError):
            await tasks[0]
        await asyncio.wait_for(tasks[1], timeout=1)
        assert slots.in_use == 0

    asyncio.run(main())


def test_a_restarted_operator_takes_a_canary_in_flight_before_objects_at_rest() -> None:
    assert first_pass_priority({"status": {"canaryRevision": "b", "phase": "Progressing"}}) == (
        Priority.DUE
    )
    assert first_pass_priority({"status": {"restoring": "a"}}) == Priority.DUE
    assert first_pass_priority({"status": {"stableRevision": "a", "phase": "Healthy"}}) == (
        Priority.ROUTINE
    )
    assert first_pass_priority({}) == Priority.ROUTINE  # a new object
    assert first_pass_priority({"status": "garbage"}) == Priority.ROUTINE


def test_only_the_safety_resync_is_routine_and_a_wake_up_is_always_due() -> None:
    resync = NextPass.after(IDLE_SECONDS - 0.3, requeue_after=IDLE_SECONDS)
    poll = NextPass.after(POLL_SECONDS - 0.3, requeue_after=POLL_SECONDS)
    assert resync.priority(woken=False) == Priority.ROUTINE
    assert resync.priority(woken=True) == Priority.DUE
    assert poll.priority(woken=False) == Priority.DUE
    assert resync.delay == IDLE_SECONDS - 0.3


def test_a_slot_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        PassSlots(0)
