"""The look grid (issue 15): canaries with the same look period look at the same
instants, so that their queries can be answered together, and never later than a
period after their own last look, as before the grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.api.base import parse_duration
from modelcanary.rollout.analysis import (
    HURRIED_LOOKS_PER_INTERVAL,
    latest_grid_instant,
    look_instant,
    next_look_at,
    seconds_until_due,
    seconds_until_next_look,
)
from tests.unit.rollout.test_count_metrics import looked_at_ten_percent

pytestmark = pytest.mark.unit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTERVALS = ("5s", "15s", "1m", "1m30s", "250ms", "7s", "1h")
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


def period_of(interval: str, *, hurried: bool) -> timedelta:
    return parse_duration(interval) / (HURRIED_LOOKS_PER_INTERVAL if hurried else 1)


@given(last=instants, interval=st.sampled_from(INTERVALS), hurried=st.booleans())
def test_the_next_look_is_a_grid_instant_after_the_last_and_within_a_period(
    last: datetime, interval: str, hurried: bool
) -> None:
    period = period_of(interval, hurried=hurried)
    at = next_look_at(last, interval, hurried=hurried)
    assert last < at <= last + period
    assert (at - EPOCH) % period == timedelta(0)


@given(
    last=instants,
    interval=st.sampled_from(INTERVALS),
    hurried=st.booleans(),
    waited=st.floats(min_value=0, max_value=7200, allow_nan=False),
)
def test_a_look_is_never_later_than_a_period_after_the_last(
    last: datetime, interval: str, hurried: bool, waited: float
) -> None:
    now = last + timedelta(seconds=waited)
    before_the_grid = max(0.0, (last + period_of(interval, hurried=hurried) - now).total_seconds())
    assert seconds_until_next_look(last, interval, now, hurried=hurried) <= before_the_grid


@given(
    cell=st.integers(min_value=0, max_value=10**6),
    offsets=st.lists(st.integers(min_value=0, max_value=14_999_999), min_size=2, max_size=5),
)
def test_canaries_that_last_looked_in_one_period_look_next_at_the_same_instant(
    cell: int, offsets: list[int]
) -> None:
    start = datetime(2026, 11, 23, tzinfo=UTC) + cell * timedelta(seconds=15)
    looks = {next_look_at(start + timedelta(microseconds=us), "15s") for us in offsets}
    assert len(looks) == 1


def test_canaries_on_different_clocks_share_the_next_instant() -> None:
    base = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    one = next_look_at(base + timedelta(seconds=1.3), "5s")
    other = next_look_at(base + timedelta(seconds=4.9), "5s")
    assert one == other == base + timedelta(seconds=5)


def test_a_look_on_the_grid_waits_a_whole_period() -> None:
    on_grid = datetime(2026, 11, 23, 12, 0, 15, tzinfo=UTC)
    assert next_look_at(on_grid, "15s") == on_grid + timedelta(seconds=15)
    assert next_look_at(on_grid, "15s", hurried=True) == on_grid + timedelta(seconds=3.75)


def test_hurried_looks_fall_on_the_plain_grid_too() -> None:
    """A canary that stops hurrying is back on the instants the others look at."""
    last = datetime(2026, 11, 23, 12, 0, 3, 100_000, tzinfo=UTC)
    hurried = [last]
    for _ in range(HURRIED_LOOKS_PER_INTERVAL):
        hurried.append(next_look_at(hurried[-1], "5s", hurried=True))
    assert next_look_at(last, "5s") in hurried
    assert hurried[1] - last < timedelta(seconds=1.25)
    assert {b - a for a, b in pairwise(hurried[1:])} == {timedelta(seconds=1.25)}


def test_a_zero_interval_looks_at_once() -> None:
    last = datetime(2026, 11, 23, 12, 0, 3, tzinfo=UTC)
    assert seconds_until_next_look(last, "0s", last + timedelta(seconds=1)) == 0.0


def test_the_first_look_and_one_at_a_new_weight_are_not_on_the_grid() -> None:
    """They close an interval at a moment something happened: no interval the judge
    compares spans two weights."""
    world = looked_at_ten_percent()
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.last_run_at is not None
    just_after = analysis.last_run_at + timedelta(milliseconds=1)
    not_yet = seconds_until_due(world.spec, world.status, just_after)
    assert not_yet is not None
    assert not_yet > 0
    analysis.weight = 0  # the weight changed since the last look
    assert seconds_until_due(world.spec, world.status, just_after) == 0.0
    world.status.analysis = None
    assert seconds_until_due(world.spec, world.status, just_after) == 0.0


@given(now=instants, interval=st.sampled_from(INTERVALS), hurried=st.booleans())
def test_the_latest_grid_instant_is_within_a_period_before_now(
    now: datetime, interval: str, hurried: bool
) -> None:
    period = period_of(interval, hurried=hurried)
    at = latest_grid_instant(now, interval, hurried=hurried)
    assert now - period < at <= now
    assert (at - EPOCH) % period == timedelta(0)


def test_a_grid_look_is_evaluated_at_the_latest_instant_after_the_last_look() -> None:
    """Late passes of one instant ask the same question; a pass more than a period
    late catches up in one look."""
    world = looked_at_ten_percent()  # interval 5s
    analysis = world.status.analysis
    assert analysis is not None
    last = analysis.last_run_at
    assert last is not None
    due = next_look_at(last, "5s")
    spec, status = world.spec, world.status
    assert look_instant(spec, status, due - timedelta(milliseconds=1)) is None  # not due
    assert look_instant(spec, status, due) == due
    assert look_instant(spec, status, due + timedelta(seconds=4.9)) == due
    assert look_instant(spec, status, due + timedelta(seconds=12)) == due + timedelta(seconds=10)
    for result in analysis.results:
        result.e_value = 3.0  # hurried: the quarter grid
    assert look_instant(spec, status, due + timedelta(seconds=1.3)) == due + timedelta(seconds=1.25)


def test_looks_at_once_are_evaluated_now() -> None:
    world = looked_at_ten_percent()
    analysis = world.status.analysis
    assert analysis is not None
    assert analysis.last_run_at is not None
    later = analysis.last_run_at + timedelta(seconds=60)
    analysis.weight = 0  # the weight changed since the last look
    assert look_instant(world.spec, world.status, later) is None
    world.status.analysis = None
    assert look_instant(world.spec, world.status, later) is None
