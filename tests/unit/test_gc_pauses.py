"""Full collections freeze what survived them; frozen cycles are still freed in time."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from prometheus_client import generate_latest

from modelcanary import __main__ as cli_main
from modelcanary import telemetry
from modelcanary.gc_pauses import BUCKETS, PAUSES, GcPauses, PauseCounts

pytestmark = pytest.mark.unit


class Node:
    """Something a weak reference can watch, to build a cycle of."""

    partner: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def only_the_tests_collections() -> Iterator[None]:
    """No automatic collection in between: each test counts the ones it asks for."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if was_enabled:
        gc.enable()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    """Let the loop run what a collection scheduled on it."""
    loop.run_until_complete(asyncio.sleep(0))


def pauses_on(loop: asyncio.AbstractEventLoop, clock: Clock) -> GcPauses:
    counts = {generation: PauseCounts() for generation in (0, 1, 2)}
    pauses = GcPauses(loop, unfreeze_seconds=60.0, clock=clock, counts=counts)
    pauses.install()
    return pauses


def test_a_full_collection_is_timed_and_its_survivors_frozen(
    loop: asyncio.AbstractEventLoop,
) -> None:
    pauses = pauses_on(loop, Clock())
    try:
        gc.collect(0)
        run_callbacks(loop)
        assert pauses.generations[0].count == 1
        assert pauses.freezes == 0, "a young collection freezes nothing"
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert pauses.generations[2].count == 1
        assert pauses.generations[2].total_seconds > 0
        assert gc.get_freeze_count() == 0, "the freeze runs on the loop, not in the collection"
        run_callbacks(loop)
        assert pauses.freezes == 1
        assert gc.get_freeze_count() > 0
    finally:
        pauses.remove()
    assert gc.get_freeze_count() == 0, "removing hands the frozen heap back"
    gc.collect()
    assert pauses.generations[2].count == 1, "and stops timing"


def test_a_cycle_that_dies_frozen_is_freed_after_the_interval(
    loop: asyncio.AbstractEventLoop,
) -> None:
    clock = Clock()
    pauses = pauses_on(loop, clock)
    try:
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        alive = weakref.ref(first)
        gc.collect()
        run_callbacks(loop)  # the cycle, alive, is frozen with the rest
        del first, second
        gc.collect()
        run_callbacks(loop)
        assert alive() is not None, "a frozen cycle is not walked by a collection"
        clock.now += 61.0
        gc.collect()
        run_callbacks(loop)  # the interval has passed: this one hands the heap back
        assert pauses.unfreezes == 1
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert alive() is None, "the next full collection walks everything and frees it"
        run_callbacks(loop)
        assert gc.get_freeze_count() > 0, "and what survived it is frozen again"
    finally:
        pauses.remove()


def test_without_the_freeze_collections_are_only_timed(loop: asyncio.AbstractEventLoop) -> None:
    counts = {generation: PauseCounts() for generation in (0, 1, 2)}
    pauses = GcPauses(loop, freeze=False, counts=counts)
    pauses.install()
    try:
        gc.collect()
        run_callbacks(loop)
        assert pauses.generations[2].count == 1
        assert (pauses.freezes, gc.get_freeze_count()) == (0, 0)
    finally:
        pauses.remove(exiting=True)
    assert gc.get_freeze_count() == 0, "nor at exit"


def test_the_flag_turns_the_freeze_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs["memo"]))
    assert cli_main.main(["run"]) == 0
    assert seen["gc_freeze"] is True
    assert cli_main.main(["run", "--no-gc-freeze"]) == 0
    assert seen["gc_freeze"] is False


def test_a_collection_after_the_loop_closed_is_still_timed() -> None:
    loop = asyncio.new_event_loop()
    pauses = pauses_on(loop, Clock())
    loop.close()
    try:
        gc.collect()
        assert pauses.generations[2].count == 1
        assert pauses.freezes == 0
    finally:
        pauses.remove()


def test_at_exit_everything_is_frozen_and_nothing_timed(loop: asyncio.AbstractEventLoop) -> None:
    pauses = pauses_on(loop, Clock())
    pauses.remove(exiting=True)
    assert gc.get_freeze_count() > 0, "the interpreter's last collection walks nothing"
    gc.collect()
    assert pauses.generations[2].count == 0


def test_pause_counts_are_cumulative_buckets() -> None:
    counts = PauseCounts()
    counts.observe(0.003)
    counts.observe(0.3)
    assert counts.count == 2
    assert counts.total_seconds == pytest.approx(0.303)
    by_bound = dict(zip(BUCKETS, counts.buckets, strict=True))
    assert by_bound[0.001] == 0
    assert by_bound[0.005] == 1
    assert by_bound[0.25] == 1
    assert by_bound[0.5] == 2
    assert by_bound[5.0] == 2


def test_metrics_show_the_process_pauses(loop: asyncio.AbstractEventLoop) -> None:
    pauses = GcPauses(loop)  # the process's own counts, as the operator's
    before = PAUSES[2].count
    pauses.install()
    try:
        gc.collect()
    finally:
        pauses.remove()
    page = generate_latest(telemetry.REGISTRY).decode()
    assert f'modelcanary_gc_pause_seconds_count{{generation="2"}} {before + 1:.1f}' in page
    assert 'modelcanary_gc_pause_seconds_bucket{generation="0",le="+Inf"}' in page
    assert 'modelcanary_gc_pause_seconds_bucket{generation="2",le="0.1"}' in page
