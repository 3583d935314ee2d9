"""The size bound: a spec whose object could outgrow etcd is refused, naming the field;
the bound really bounds the largest object such a spec can produce."""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelcanary.analysis import sequential
from modelcanary.api import size
from modelcanary.api.base import ELLIPSIS, MESSAGE_BYTES, ROW_MESSAGE_BYTES, SLICE_VALUE_BYTES
from modelcanary.api.judging import MAX_GRID_POINTS, MetricResult, Verdict
from modelcanary.api.modeldeployment import KnownGood, ModelDeploymentSpec, worst_case_bytes
from modelcanary.api.validation import InvalidSpecError, parse
from tests.size_cases import object_bytes, padded_manifest, worst_status

pytestmark = pytest.mark.unit


def _spec(manifest: dict[str, Any]) -> ModelDeploymentSpec:
    return parse(ModelDeploymentSpec, manifest["spec"], prefix="spec")


def _largest_accepted_template(limit: int) -> int:
    """Bisect the padding the models still accept at ``limit``."""
    low, high = 0, size.ETCD_REQUEST_LIMIT
    while high - low > 1:
        middle = (low + high) // 2
        try:
            _spec(padded_manifest(limit=limit, template_bytes=middle))
        except InvalidSpecError:
            high = middle
        else:
            low = middle
    return low


@pytest.mark.parametrize("limit", [1, 10, 100])
def test_the_largest_accepted_spec_grows_to_an_object_etcd_stores(limit: int) -> None:
    padding = _largest_accepted_template(limit)
    manifest = padded_manifest(limit=limit, template_bytes=padding)
    spec = _spec(manifest)
    grown = object_bytes(manifest, worst_status(manifest))
    assert grown <= worst_case_bytes(spec) <= size.OBJECT_BUDGET < size.ETCD_REQUEST_LIMIT
    # The bound is not loose to the point of refusing what would fit twice over.
    assert grown > size.OBJECT_BUDGET / 2


def test_a_hundred_revisions_of_a_large_template_are_refused_naming_the_field() -> None:
    manifest = padded_manifest(limit=100, template_bytes=16_000)
    with pytest.raises(InvalidSpecError) as refused:
        _spec(manifest)
    (error,) = refused.value.errors
    assert error.path == "spec.revisionHistoryLimit"
    assert "lower revisionHistoryLimit" in str(error)
    # The same template with a shorter history fits.
    _spec(padded_manifest(limit=10, template_bytes=16_000))


def test_a_usual_spec_fits_with_room_to_spare_and_a_long_history_still_fits() -> None:
    spec = _spec(padded_manifest(limit=10, template_bytes=1_000))
    assert worst_case_bytes(spec) < size.OBJECT_BUDGET / 4
    _spec(padded_manifest(limit=100, template_bytes=1_000))


def test_a_distribution_over_32_slices_is_refused_and_10_slices_fit() -> None:
    manifest = padded_manifest(limit=10, template_bytes=0)
    metrics = manifest["spec"]["analysis"]["metrics"]
    scores = next(m for m in metrics if m["name"] == "scores")
    scores["slice"] = {"label": "segment", "max": 32}
    with pytest.raises(InvalidSpecError, match="judge fewer slices"):
        _spec(manifest)
    scores["slice"]["max"] = 10
    spec = _spec(manifest)
    assert object_bytes(manifest, worst_status(manifest)) <= worst_case_bytes(spec)


@pytest.mark.parametrize("tolerance", [0.0, 0.01, 0.1, 0.5, 1.0, 5.0])
@pytest.mark.parametrize("side", ["greater", "two-sided"])
def test_the_judges_grid_never_exceeds_what_the_bound_assumes(
    tolerance: float, side: sequential.Side
) -> None:
    psi0 = math.log1p(tolerance)
    grid = sequential.grid_with(psi0, side)
    assert len(grid) <= MAX_GRID_POINTS
    assert len(sequential.components(grid, psi0, side)) <= MAX_GRID_POINTS


def test_text_the_operator_writes_is_cut_when_written_however_it_was_set() -> None:
    row = MetricResult(metric="errors", verdict=Verdict.ERROR, message="x" * 10_000)
    row.message = "\u00e9" * 10_000  # an assignment is not validated; the dump still cuts
    row.slice = "s" * 1_000
    written = row.to_dict()
    assert len(written["message"].encode()) <= ROW_MESSAGE_BYTES
    assert written["message"].endswith(ELLIPSIS)
    assert len(written["slice"].encode()) <= SLICE_VALUE_BYTES
    assert row.message == "\u00e9" * 10_000  # the operator's own view is not cut
    entry = KnownGood.model_validate(
        {
            "revision": "r",
            "model": {"name": "m", "version": "1", "uri": "s3://m"},
            "promotedAt": "2026-11-27T00:00:00Z",
            "note": "n" * 5_000,
        }
    )
    assert len(entry.to_dict()["note"]) <= MESSAGE_BYTES
    assert (
        MetricResult(metric="e", verdict=Verdict.PASS, message="short").to_dict()["message"]
        == "short"
    )
