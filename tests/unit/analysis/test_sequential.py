"""The e-process behind count metrics: exact likelihoods, and expectations at most one.

The likelihood is cross-checked against SciPy's Fisher noncentral hypergeometric
distribution, an implementation written independently of ours. Validity is
checked exactly, not by simulation: for small blocks every outcome is
enumerated, and the expected capped likelihood ratio of every test component
under every null odds ratio must be at most one. That is the property the
whole judge rests on (products of such factors are supermartingales, and
Ville's inequality does the rest).
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import nchypergeom_fisher

from modelcanary.analysis import sequential
from modelcanary.analysis.sequential import Evidence, Null, Table

pytestmark = pytest.mark.unit


def scipy_log_pmf(table: Table, psi: float) -> float:
    n1, n2 = round(table.candidate_total), round(table.stable_total)
    m = round(table.candidate_events + table.stable_events)
    return float(
        nchypergeom_fisher.logpmf(round(table.candidate_events), n1 + n2, n1, m, math.exp(psi))
    )


@pytest.mark.parametrize(
    "table",
    [
        Table(2, 10, 0, 90),
        Table(3, 30, 5, 270),
        Table(40, 500, 30, 600),
        Table(0, 12, 7, 80),
        Table(11, 11, 3, 40),
    ],
)
def test_log_likelihoods_match_scipy_up_to_a_constant(table: Table) -> None:
    grid = sequential.GRID
    ours = sequential.log_likelihoods(table, grid)
    theirs = [scipy_log_pmf(table, psi) for psi in grid]
    zero = grid.index(0.0)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine - ours[zero] == pytest.approx(reference - theirs[zero], abs=1e-7)


def test_a_block_one_revision_did_not_serve_changes_nothing() -> None:
    start = Evidence.start(0.0, "greater")
    for table in (Table(0, 0, 3, 50), Table(1, 10, 0, 0)):
        assert sequential.update(start, table, Null()) == start


def test_a_block_whose_margins_fix_the_outcome_is_compared_but_not_evidence() -> None:
    start = Evidence.start(0.0, "greater")
    for table in (Table(0, 10, 0, 50), Table(10, 10, 50, 50)):
        assert not table.informative
        after = sequential.update(start, table, Null())
        assert (after.test, after.log_likelihood, after.blocks) == (
            start.test,
            start.log_likelihood,
            0,
        )
        assert (after.candidate_total, after.stable_total) == (10, 50)


def exact_expectation(n1: int, n2: int, m: int, true_psi: float, test: Null) -> list[float]:
    """E[capped block ratio] of each component when the true log odds ratio is ``true_psi``."""
    grid = sequential.grid_with(test.psi0, test.side)
    low, high = max(0, m - n2), min(n1, m)
    weights = [
        math.comb(n1, x) * math.comb(n2, m - x) * math.exp(true_psi * x)
        for x in range(low, high + 1)
    ]
    total = math.fsum(weights)
    expectations = [0.0] * len(sequential.components(grid, test.psi0, test.side))
    for x, weight in zip(range(low, high + 1), weights, strict=True):
        block = sequential.log_likelihoods(Table(x, n1, m - x, n2), grid)
        at = dict(zip(grid, block, strict=True))
        for i, (alternative, null) in enumerate(sequential.components(grid, test.psi0, test.side)):
            ratio = min(math.exp(at[alternative] - at[null]), test.cap)
            expectations[i] += weight / total * ratio
    return expectations


@settings(max_examples=150, deadline=None)
@given(
    n1=st.integers(1, 14),
    n2=st.integers(1, 14),
    events=st.floats(0.05, 0.95),
    tolerance=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    below=st.floats(0.0, 3.0),
    side=st.sampled_from(["greater", "two-sided"]),
)
def test_every_component_is_an_e_value_under_every_null(
    *, n1: int, n2: int, events: float, tolerance: float, below: float, side: sequential.Side
) -> None:
    m = max(1, min(n1 + n2 - 1, round(events * (n1 + n2))))
    test = Null(psi0=math.log1p(tolerance), side=side, cap=50.0)
    # The null's boundary, and a point well inside it.
    if side == "greater":
        true_values = [test.psi0, test.psi0 - below]
    else:
        true_values = [test.psi0, -test.psi0, max(-test.psi0, test.psi0 - below)]
    for true_psi in true_values:
        for expectation in exact_expectation(n1, n2, m, true_psi, test):
            assert expectation <= 1 + 1e-9


def test_a_worse_candidate_gathers_evidence_and_an_equal_one_does_not() -> None:
    worse = equal = Evidence.start(0.0, "greater")
    for _ in range(5):
        worse = sequential.update(worse, Table(3, 10, 1, 90), Null())
        equal = sequential.update(equal, Table(1, 10, 9, 90), Null())
    assert sequential.log_e_value(worse) > math.log(1000)
    assert sequential.log_e_value(equal) < 0


def test_the_cap_bounds_what_one_block_can_add() -> None:
    one = sequential.update(Evidence.start(0.0, "greater"), Table(10, 10, 0, 1000), Null(cap=20))
    assert max(one.test) == pytest.approx(math.log(20))


def test_tolerance_is_on_the_grid_and_tested_against() -> None:
    test = Null(psi0=math.log1p(0.1))
    grid = sequential.grid_with(test.psi0, "greater")
    assert test.psi0 in grid
    assert all(
        null == test.psi0 and alt > test.psi0
        for alt, null in sequential.components(grid, test.psi0, "greater")
    )
    # An odds ratio of exactly 1.1 with much data is not rejected at 10% tolerance.
    evidence = Evidence.start(test.psi0, "greater")
    for _ in range(50):
        evidence = sequential.update(evidence, Table(110, 1000, 100, 1000), test)
    assert sequential.log_e_value(evidence) < math.log(100)


def test_mantel_haenszel_and_the_interval_find_a_steady_odds_ratio() -> None:
    evidence = Evidence.start(0.0, "greater")
    # Odds 1/4 for the candidate vs 1/9 for stable: an odds ratio of 2.25, blocks of
    # different sizes and baselines.
    for scale in (1, 2, 3, 1, 2, 3, 1, 2):
        evidence = sequential.update(
            evidence, Table(20 * scale, 100 * scale, 10 * scale, 100 * scale), Null()
        )
    estimate = sequential.estimate(evidence)
    assert estimate == pytest.approx(2.25)
    interval = sequential.interval(evidence, 0.01)
    assert interval.low is not None
    assert interval.high is not None
    assert interval.low < 2.25 < interval.high
    assert interval.low > 1


def test_an_interval_without_evidence_is_unbounded() -> None:
    interval = sequential.interval(Evidence.start(0.0, "greater"), 0.01)
    assert (interval.low, interval.high) == (None, None)
    assert sequential.estimate(Evidence.start(0.0, "greater")) is None


def test_a_bad_test_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        Null(psi0=-0.1)
    with pytest.raises(ValueError, match="cap"):
        Null(cap=1.0)


@pytest.mark.parametrize(
    ("table", "psi"), [(Table(3, 30, 5, 270), 0.0), (Table(40, 500, 30, 600), 0.7)]
)
def test_the_residual_is_standardised_by_the_exact_conditional_distribution(
    table: Table, psi: float
) -> None:
    n1, n2 = round(table.candidate_total), round(table.stable_total)
    m = round(table.candidate_events + table.stable_events)
    mean, variance = nchypergeom_fisher.stats(n1 + n2, n1, m, math.exp(psi), moments="mv")
    expected = (table.candidate_events - float(mean)) / math.sqrt(float(variance))
    assert sequential.residual(table, psi) == pytest.approx(expected, rel=1e-6)
    assert sequential.residual(Table(0, 10, 0, 50), 0.0) is None


def test_overdispersed_blocks_temper_what_later_blocks_add() -> None:
    adaptive = Null(adapt=True)
    evidence = Evidence.start(0.0, "greater")
    assert sequential.overdispersion_temper(evidence) == 1.0
    # Blocks that swing far more than independent requests would, both ways.
    for table in [Table(8, 20, 10, 200), Table(0, 20, 30, 200)] * 10:
        evidence = sequential.update(evidence, table, adaptive)
    power = sequential.overdispersion_temper(evidence)
    assert power < 0.5
    before = list(evidence.test)
    after = sequential.update(evidence, Table(5, 20, 10, 200), adaptive)
    plain = sequential.update(evidence, Table(5, 20, 10, 200), Null())
    gain = [a - b for a, b in zip(after.test, before, strict=True)]
    full = [a - b for a, b in zip(plain.test, before, strict=True)]
    assert gain == pytest.approx([power * g for g in full])


def test_a_first_block_of_one_request_does_not_freeze_a_real_effect() -> None:
    """The e2e flake of a 30% slower candidate promoted: its first latency interval held
    one request without the event, the estimate of 0 that left put the next block
    hundreds of deviations away, and the overdispersion it implied tempered every later
    block to nothing. Blocks with a steady odds ratio of about 5 must keep adding."""
    adaptive = Null(psi0=math.log1p(0.1), adapt=True)
    evidence = sequential.update(
        Evidence.start(adaptive.psi0, "greater"), Table(0, 1, 40, 200), adaptive
    )
    grown = []
    for _ in range(4):
        evidence = sequential.update(evidence, Table(104, 180, 107, 510), adaptive)
        grown.append(sequential.log_e_value(evidence))
    assert sequential.overdispersion_temper(evidence) > 0.3
    assert all(later > earlier + 3 for earlier, later in itertools.pairwise(grown))
    assert grown[-1] > math.log(300)


def test_an_estimate_of_zero_or_infinity_is_measured_against_no_difference() -> None:
    adaptive = Null(adapt=True)
    evidence = Evidence.start(0.0, "greater")
    for table in (Table(0, 5, 9, 50), Table(1, 5, 4, 50)):
        assert sequential.estimate(evidence) in (None, 0.0)
        before = evidence.dispersion
        evidence = sequential.update(evidence, table, adaptive)
        deviation = sequential.residual(table, 0.0)
        assert deviation is not None
        assert evidence.dispersion - before == pytest.approx(deviation**2)
    only_candidate = sequential.update(Evidence.start(0.0, "greater"), Table(3, 5, 0, 50), adaptive)
    assert sequential.estimate(only_candidate) == math.inf
    table = Table(1, 5, 2, 50)
    after = sequential.update(only_candidate, table, adaptive)
    deviation = sequential.residual(table, 0.0)
    assert deviation is not None
    assert after.dispersion - only_candidate.dispersion == pytest.approx(deviation**2)


def test_one_block_far_off_the_estimate_adds_at_most_the_cap() -> None:
    adaptive = Null(adapt=True)
    evidence = sequential.update(Evidence.start(0.0, "greater"), Table(1, 20, 240, 480), adaptive)
    far = Table(170, 180, 100, 510)  # the first block's estimate is about 0.05; this, 40
    deviation = sequential.residual(far, math.log(sequential.estimate(evidence) or 1.0))
    assert deviation is not None
    assert deviation**2 > 100 * sequential.MAX_BLOCK_DISPERSION
    after = sequential.update(evidence, far, adaptive)
    assert after.dispersion - evidence.dispersion == pytest.approx(sequential.MAX_BLOCK_DISPERSION)
