"""The claim planner, run by simulated replicas: never two owners of a shard, every shard
owned again within the bound after a death, shares within 1 at rest; and the shard of
an object is the same in every process."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelcanary.shards.ownership import (
    Holdings,
    LeaseRecord,
    Sighting,
    Timing,
    is_live,
    live_replicas,
    observe,
    plan_claims,
    quotas,
    shard_of,
)
from tests.unit.shards.simulation import Cluster

pytestmark = pytest.mark.unit

FAST = Timing(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
DEFAULT = Timing()


# --------------------------------------------------------------------------- shard_of


def test_the_shard_of_an_object_is_fixed_across_processes_and_releases() -> None:
    # Fixed values: Python salts str hashes per process, so hash() would not
    # give these twice; a change here moves every object to another replica.
    assert shard_of("default", "fraud", 16) == 5
    assert shard_of("payments", "churn-v2", 16) == 5
    assert shard_of("ml", "a", 16) == 2
    assert shard_of("kube-system", "x", 16) == 15
    assert shard_of("default", "fraud", 3) == 2
    assert shard_of("payments", "churn-v2", 3) == 1


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.integers(1, 64))
def test_every_object_falls_in_a_shard(namespace: str, name: str, shards: int) -> None:
    assert 0 <= shard_of(namespace, name, shards) < shards


def test_shard_of_spreads_objects_evenly() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[shard_of(f"ns-{i % 13}", f"model-{i}", 8)] += 1
    assert min(counts) > 900, counts
    assert max(counts) < 1100, counts


def test_the_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        Timing(lease_duration=10, renew_deadline=10, retry_period=2)
    assert DEFAULT.takeover_bound() == 21.0
    assert FAST.takeover_bound(round_latency=0.1) == pytest.approx(4.8)


# --------------------------------------------------------------------------- one round


def record(holder: str | None, version: str = "1", duration: float = 3.0) -> LeaseRecord:
    return LeaseRecord(holder, version, duration)


def test_a_lease_expires_a_duration_after_its_version_was_first_seen() -> None:
    seen = observe({}, {0: record("a", "7")}, now=100.0)
    assert seen[0] == Sighting("7", 100.0)
    # The same version read again keeps its first sighting; a new one restarts it.
    assert observe(seen, {0: record("a", "7")}, now=102.0)[0].seen_at == 100.0
    assert observe(seen, {0: record("a", "8")}, now=102.0)[0].seen_at == 102.0
    assert is_live(record("a", "7"), seen[0], now=102.9)
    assert not is_live(record("a", "7"), seen[0], now=103.0)
    assert not is_live(record(None, "7"), seen[0], now=100.0)


def test_a_new_replica_takes_nothing_held_and_the_holders_release_its_share() -> None:
    records = {k: record("a" if k < 4 else "b", str(k)) for k in range(8)}
    seen = observe({}, records, now=0.0)
    live = frozenset({"a", "b", "c"})
    newcomer = plan_claims("c", 8, records=records, sightings=seen, live=live, now=1.0)
    assert newcomer.acquire == frozenset()
    assert len(newcomer.target["c"]) == 2
    a = plan_claims("a", 8, records=records, sightings=seen, live=live, now=1.0)
    b = plan_claims("b", 8, records=records, sightings=seen, live=live, now=1.0)
    assert a.target == b.target == newcomer.target
    assert len(a.release) == 1
    assert len(b.release) == 1
    assert a.release | b.release == newcomer.target["c"]


def test_a_dead_replicas_shards_go_to_the_survivors_once_expired() -> None:
    records = {k: record(["a", "b", "c"][k % 3], str(k)) for k in range(6)}
    seen = observe({}, records, now=0.0)
    live = frozenset({"a", "b"})  # c's presence lapsed
    early = plan_claims("a", 6, records=records, sightings=seen, live=live, now=2.0)
    assert early.acquire == frozenset()  # c's Leases are still valid: never stolen
    # a and b renewed theirs meanwhile (new versions); c's did not change.
    records = {k: r if r.holder == "c" else record(r.holder, f"{k}'") for k, r in records.items()}
    seen = observe(seen, records, now=2.5)
    late_a = plan_claims("a", 6, records=records, sightings=seen, live=live, now=3.0)
    late_b = plan_claims("b", 6, records=records, sightings=seen, live=live, now=3.0)
    assert late_a.acquire | late_b.acquire == {2, 5}
    assert not late_a.acquire & late_b.acquire


def test_quotas_give_the_extra_shards_to_who_holds_most() -> None:
    assert quotas(frozenset({"a", "b", "c"}), 8, {"c": 3, "a": 3, "b": 2}) == {
        "a": 3,
        "b": 2,
        "c": 3,
    }
    assert sum(quotas(frozenset({"a", "b", "c", "d"}), 10, {}).values()) == 10


def test_ownership_lapses_at_the_renew_deadline_from_the_send() -> None:
    holdings = Holdings().renewed(shard_of("ns", "m", 4), sent_at=50.0)
    assert holdings.owns("ns", "m", 4, now=51.9, timing=FAST)
    assert not holdings.owns("ns", "m", 4, now=52.0, timing=FAST)
    assert not holdings.without({shard_of("ns", "m", 4)}).owns("ns", "m", 4, 50.0, FAST)


def test_a_held_shard_is_renewed_a_third_of_the_duration_after_the_last_send() -> None:
    # FAST: a 3 s duration, so renewals fall due 1 s after the send.
    holdings = Holdings().renewed(0, sent_at=50.0)
    assert not holdings.renewal_due(0, now=50.9, timing=FAST)
    assert holdings.renewal_due(0, now=51.0, timing=FAST)
    # Held by this name, but not sent by this process (a restart): write first.
    assert holdings.renewal_due(1, now=50.0, timing=FAST)


def test_scaled_timing_keeps_client_gos_proportions() -> None:
    assert Timing.scaled(15) == DEFAULT
    short = Timing.scaled(3)
    assert (short.lease_duration, short.renew_deadline) == (3, 2)
    assert short.retry_period == pytest.approx(0.4)


def test_the_renewal_must_fall_due_a_round_before_the_deadline() -> None:
    with pytest.raises(ValueError, match="lease_duration / 3 \\+ retry_period < renew_deadline"):
        Timing(lease_duration=15, renew_deadline=6, retry_period=2)


def test_presence_counts_only_live_replicas_and_always_me() -> None:
    presence = {"a": record("a", "1"), "b": record("b", "2"), "gone": record(None, "3")}
    seen = observe({}, presence, now=0.0)
    assert live_replicas("me", presence, seen, now=1.0) == {"a", "b", "me"}
    assert live_replicas("me", presence, seen, now=3.0) == {"me"}


# --------------------------------------------------------------------------- simulated replicas


@dataclass(frozen=True)
class Step:
    wait: float
    action: str  # "kill", "join", "pause" or "none"
    who: int
    amount: float


steps = st.lists(
    st.builds(
        Step,
        wait=st.floats(0.0, 4.0),
        action=st.sampled_from(["kill", "join", "pause", "none"]),
        who=st.integers(0, 10),
        amount=st.floats(0.0, 8.0),
    ),
    max_size=12,
)
offsets = st.floats(-1e6, 1e6, allow_nan=False)


def play(cluster: Cluster, script: list[Step], offset: float) -> None:
    joined = len(cluster.replicas)
    for step in script:
        cluster.run_until(cluster.time + step.wait)
        alive = cluster.alive()
        target = alive[step.who % len(alive)]
        if step.action == "kill" and len(alive) > 1:
            cluster.kill(target)
        elif step.action == "join":
            joined += 1
            cluster.join(f"replica-{joined}", offset * joined)
        elif step.action == "pause":
            # A round late by up to ~3 lease durations: the replica must stop
            # acting by itself, and others may take its shards meanwhile.
            target.pause_next = step.amount


def settle(cluster: Cluster, timing: Timing) -> None:
    """Long enough for any leftover Lease to expire and the shares to even out."""
    cluster.run_until(cluster.time + 2 * timing.takeover_bound(cluster.latency) + 4)


@settings(max_examples=150, deadline=None)
@given(
    shards=st.integers(1, 10),
    start=st.integers(1, 4),
    latency=st.floats(0.0, 0.4),
    offset=offsets,
    script=steps,
)
def test_no_shard_ever_has_two_owners_through_kills_joins_and_pauses(
    shards: int, start: int, latency: float, offset: float, script: list[Step]
) -> None:
    cluster = Cluster(shards, FAST, latency)
    for i in range(start):
        cluster.join(f"replica-{i}", offset * (i - 1))
    play(cluster, script, offset)  # every event checks: at most one owner per shard
    settle(cluster, FAST)
    assert cluster.max_owners_seen <= 1


@settings(max_examples=100, deadline=None)
# Found by this test: the quota's extra shard went to whichever survivor held the
# most, which changed between their rounds, so the takeover took one round more
# than the bound (5.27 s against 5.20).
@example(
    shards=9,
    start=4,
    latency=0.234375,
    offset=0.0,
    script=[Step(1.0, "pause", 0, 0.0), Step(2.5, "kill", 0, 0.0), Step(3.5, "kill", 0, 0.0)],
    victim=0,
    join_after=False,
)
@given(
    shards=st.integers(1, 12),
    start=st.integers(2, 4),
    latency=st.floats(0.0, 0.3),
    offset=offsets,
    script=steps,
    victim=st.integers(0, 10),
    join_after=st.booleans(),
)
def test_after_a_death_every_shard_is_owned_within_the_bound_and_shares_even_out(
    *,
    shards: int,
    start: int,
    latency: float,
    offset: float,
    script: list[Step],
    victim: int,
    join_after: bool,
) -> None:
    cluster = Cluster(shards, FAST, latency)
    for i in range(start):
        cluster.join(f"replica-{i}", offset * (i + 1))
    play(cluster, [*script, Step(0, "join", 0, 0)], offset)
    # A replica in a pause counts as live until its presence expires, and holds
    # nothing meanwhile: the shares even out once the last pause is over.
    cluster.run_until_unpaused()
    settle(cluster, FAST)
    assert cluster.all_owned(), cluster.owners()
    assert max(cluster.counts().values()) - min(cluster.counts().values()) <= 1

    alive = cluster.alive()
    killed_at = cluster.time
    cluster.kill(alive[victim % len(alive)])
    bound = FAST.takeover_bound(latency)
    while not cluster.all_owned():
        assert cluster.time - killed_at <= bound, (cluster.time - killed_at, cluster.owners())
        cluster.run_until(cluster.time + 0.01)

    if join_after:
        cluster.join("late", offset / 3)
    settle(cluster, FAST)
    assert cluster.all_owned(), cluster.owners()
    counts = cluster.counts()
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_default_timing_hands_a_dead_replicas_shards_over_within_21_seconds() -> None:
    cluster = Cluster(16, DEFAULT, latency=0.0)
    replicas = [cluster.join(name, offset) for name, offset in (("a", 0), ("b", 7e5), ("c", -3))]
    cluster.run_until(60)
    assert sorted(cluster.counts().values()) == [5, 5, 6]
    cluster.kill(replicas[0])
    killed_at = cluster.time
    while not cluster.all_owned():
        cluster.run_until(cluster.time + 0.1)
    assert cluster.time - killed_at <= DEFAULT.takeover_bound()
    assert sorted(cluster.counts().values()) == [8, 8]


@pytest.mark.parametrize("latency", [0.0, 1.0, 2.9])
def test_held_shards_are_renewed_at_a_third_of_the_duration_without_a_gap(latency: float) -> None:
    """16 shards renewed every round (2 s) were 8 writes/s; due at a third of the
    duration (5 s), a renewal comes in the first round after that: every 6 s with
    rounds 2 s apart, fewer still with latency. Up to 3 s of latency, none lapses."""
    cluster = Cluster(16, DEFAULT, latency=latency)
    for name, offset in (("a", 0.0), ("b", 4e5), ("c", -9.0)):
        cluster.join(name, offset)
    cluster.run_until(60)
    assert cluster.all_owned(), cluster.owners()
    cluster.count_gaps = True
    writes_before = cluster.shard_writes
    cluster.run_until(660)
    writes_per_second = (cluster.shard_writes - writes_before) / 600
    assert writes_per_second <= 16 / DEFAULT.renew_interval, writes_per_second
    assert cluster.ownership_gaps == 0


@settings(max_examples=200, deadline=None)
@given(
    shards=st.integers(2, 16),
    joins=st.lists(st.floats(0.0, 4.0), min_size=3, max_size=3),
    killed_at=st.floats(0.0, 40.0),
    latency=st.floats(0.0, 0.5),
    victim=st.integers(0, 2),
    lease_seconds=st.sampled_from([6.0, 15.0]),
    order=st.permutations(["replica-a", "replica-b", "replica-c"]),
)
def test_a_dead_replicas_shards_change_hands_once_and_no_other_shard_moves(
    *,
    shards: int,
    joins: list[float],
    killed_at: float,
    latency: float,
    victim: int,
    lease_seconds: float,
    order: list[str],
) -> None:
    """One handover per orphaned shard, and none for anyone else's: every handover
    stops a pass and starts it again elsewhere. A replica writes its presence every
    round but a shard only every third of the duration, so a dead replica's shards
    expire while it still counts as live; the share computed then must not give a
    shard to one survivor for a round and move it to another once the dead replica
    drops out. (Suspected when a CI run saw a second replica write the canary after
    the kill; that write was the test's own graceful stop of the taker, see
    test_chart_shards.py, but the property was unguarded.)"""
    timing = Timing.scaled(lease_seconds)
    cluster = Cluster(shards, timing, latency=latency)
    replicas = []
    for name, offset, gap in zip(order, (0, 7e5, -3), joins, strict=True):
        cluster.run_until(cluster.time + gap)  # started one after another, as pods are
        replicas.append(cluster.join(name, offset))
    while not (
        cluster.all_owned() and max(cluster.counts().values()) - min(cluster.counts().values()) <= 1
    ):
        cluster.run_until(cluster.time + 0.1)  # the shares settled, as the e2e waits for
    cluster.run_until(cluster.time + killed_at)
    before = {k: list(log) for k, log in cluster.holders.items()}
    dead = replicas[victim]
    orphaned = {k for k, names in cluster.owners().items() if names == [dead.name]}
    cluster.kill(dead)
    settle(cluster, timing)
    assert cluster.all_owned(), cluster.owners()
    moves = {k: cluster.holders[k][len(before[k]) :] for k in range(shards)}
    assert {k for k, new in moves.items() if new} == orphaned, moves
    assert all(len(new) == 1 for k, new in moves.items() if k in orphaned), moves
