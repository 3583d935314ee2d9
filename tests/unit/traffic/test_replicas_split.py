"""The replicas router's arithmetic: weights to replica counts, and counts back to percents.

These functions decide what the rollout expects to read back, so their
properties are checked over every total and weight, not a few examples.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcanary.traffic.replicas import effective_weight, replica_split, split_replicas
from modelcanary.traffic.weights import check_weights, percentages

pytestmark = pytest.mark.unit

totals = st.integers(min_value=1, max_value=200)
splittable = st.integers(min_value=2, max_value=200)
weights = st.integers(min_value=0, max_value=100)


@given(total=totals, weight=weights)
def test_split_always_sums_to_the_total(total: int, weight: int) -> None:
    stable, canary = replica_split(total, weight)
    assert stable + canary == total
    assert stable >= 0
    assert canary >= 0


@given(total=totals, low=weights, high=weights)
def test_split_is_monotonic_in_the_weight(total: int, low: int, high: int) -> None:
    low, high = sorted((low, high))
    assert replica_split(total, low)[1] <= replica_split(total, high)[1]
    assert effective_weight(total, low) <= effective_weight(total, high)


@given(total=totals)
def test_endpoints_are_exact(total: int) -> None:
    assert replica_split(total, 0) == (total, 0)
    assert replica_split(total, 100) == (0, total)
    assert effective_weight(total, 0) == 0
    assert effective_weight(total, 100) == 100


@given(total=splittable, weight=st.integers(min_value=1, max_value=99))
def test_both_sides_keep_a_pod_while_both_take_traffic(total: int, weight: int) -> None:
    stable, canary = replica_split(total, weight)
    assert canary >= 1
    assert stable >= 1


@given(total=splittable, weight=st.integers(min_value=1, max_value=99))
def test_the_delivered_weight_is_within_one_step_of_the_asked_one(total: int, weight: int) -> None:
    delivered = effective_weight(total, weight)
    assert abs(delivered - weight) <= 100 / total + 1


def test_ten_percent_of_four_replicas_is_one_pod() -> None:
    assert replica_split(4, 10) == (3, 1)
    assert effective_weight(4, 10) == 25
    assert replica_split(4, 50) == (2, 2)
    assert effective_weight(10, 10) == 10


def test_one_replica_cannot_be_split() -> None:
    # The decision core's granularity: the canary gets the only pod only at 100%.
    assert replica_split(1, 50) == (1, 0)
    assert effective_weight(1, 50) == 0
    with pytest.raises(ValueError, match="at least 1"):
        replica_split(0, 50)


# --------------------------------------------------------------------------- split_replicas


@given(total=totals, weight=weights)
def test_split_replicas_matches_the_core_for_two_revisions(total: int, weight: int) -> None:
    counts = split_replicas(total, {"stable": 100 - weight, "canary": weight}, "canary")
    assert (counts["stable"], counts["canary"]) == replica_split(total, weight)


def test_the_canary_is_told_apart_from_a_tie_by_its_role() -> None:
    # 50% of 5 replicas is 2 pods for the canary; which side is the canary matters.
    assert split_replicas(5, {"aaa": 50, "bbb": 50}, "aaa") == {"aaa": 2, "bbb": 3}
    assert split_replicas(5, {"aaa": 50, "bbb": 50}, "bbb") == {"aaa": 3, "bbb": 2}
    # Without a role, the smaller weight is the canary.
    assert split_replicas(4, {"old": 90, "new": 10}) == {"old": 3, "new": 1}


def test_revisions_left_at_zero_get_no_pods() -> None:
    assert split_replicas(4, {"a": 100, "b": 0, "c": 0}) == {"a": 4, "b": 0, "c": 0}


@given(
    total=totals,
    shares=st.lists(st.integers(min_value=1, max_value=20), min_size=3, max_size=6),
)
def test_three_revisions_share_every_pod(total: int, shares: list[int]) -> None:
    scaled = [share * 100 // sum(shares) for share in shares]
    scaled[0] += 100 - sum(scaled)
    asked = {f"r{index}": weight for index, weight in enumerate(scaled)}
    counts = split_replicas(total, asked)
    assert sum(counts.values()) == total
    if total >= len(asked):
        assert all(counts[r] >= 1 for r, w in asked.items() if w > 0)


def test_weights_must_sum_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        split_replicas(4, {"a": 50, "b": 40})
    with pytest.raises(ValueError, match=r"0\.\.100"):
        check_weights({"a": 150, "b": -50})


# --------------------------------------------------------------------------- percentages


@given(total=splittable, weight=weights)
def test_ready_pods_read_back_as_the_weight_the_core_expects(total: int, weight: int) -> None:
    stable, canary = replica_split(total, weight)
    read = percentages({"stable": stable, "canary": canary})
    assert read["canary"] == effective_weight(total, weight)
    assert read["stable"] == 100 - effective_weight(total, weight)


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 1000), min_size=1))
def test_percentages_sum_to_100_and_stay_close(amounts: dict[str, int]) -> None:
    shares = percentages(amounts)
    assert set(shares) == set(amounts)
    total = sum(amounts.values())
    if total == 0:
        assert set(shares.values()) == {0}
        return
    assert sum(shares.values()) == 100
    for key, amount in amounts.items():
        assert abs(shares[key] - 100 * amount / total) < 1.5
        assert shares[key] >= 0


def test_percentages_of_known_splits() -> None:
    assert percentages({"a": 1, "b": 3}) == {"a": 25, "b": 75}
    assert percentages({"a": 1, "b": 7}) == {"a": 12, "b": 88}  # 12.5 rounds to even
    assert percentages({"a": 3, "b": 5}) == {"a": 38, "b": 62}
    # Three equal thirds: the missing percent goes to the first by name, deterministically.
    assert percentages({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert percentages({"a": 0, "b": 0}) == {"a": 0, "b": 0}
