"""Per-segment faults of the e2e model server: parsed and refused as strictly as the rest.

A test that turns one segment of a candidate bad relies on these overrides
meaning exactly what they say; a misspelt segment or fault that were silently
ignored would leave the candidate healthy and the test proving nothing.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import pytest

from e2e.modelserver.server import (
    SEGMENT_WEIGHTS,
    SEGMENTS,
    Faults,
    ModelService,
    main,
)

pytestmark = pytest.mark.unit


def test_an_override_applies_to_its_segment_only() -> None:
    faults = Faults().updated(
        {"error_rate": 0.1, "segments": {"eu": {"error_rate": 0.3, "score_shift": -0.2}}}
    )
    assert faults.for_segment("eu") == Faults(error_rate=0.3, score_shift=-0.2)
    assert faults.for_segment("us") == Faults(error_rate=0.1)
    assert faults.for_segment("apac") == Faults(error_rate=0.1)
    # Faults the segment does not name follow the top level, now and after an update.
    later = faults.updated({"added_latency_seconds": 0.05})
    assert later.for_segment("eu") == Faults(
        error_rate=0.3, score_shift=-0.2, added_latency_seconds=0.05
    )
    assert later.segments == {"eu": {"error_rate": 0.3, "score_shift": -0.2}}


def test_every_fault_can_be_overridden_per_segment() -> None:
    overrides = {
        "error_rate": 1.0,
        "added_latency_seconds": 0.5,
        "latency_multiplier": 1.3,
        "score_shift": 0.25,
    }
    faults = Faults().updated({"segments": {"apac": overrides}})
    assert asdict(faults.for_segment("apac")) == {**overrides, "segments": {}}


def test_an_update_replaces_the_overrides_as_a_whole() -> None:
    faults = Faults().updated({"segments": {"eu": {"error_rate": 0.3}, "us": {"score_shift": 0.1}}})
    assert faults.updated({"segments": {"us": {"error_rate": 0.2}}}).segments == {
        "us": {"error_rate": 0.2}
    }
    assert faults.updated({"segments": {}}).segments == {}
    # An update that does not name segments leaves them alone.
    assert faults.updated({"error_rate": 0.5}).segments == faults.segments


def test_a_segment_with_no_overrides_reads_back_as_none() -> None:
    assert Faults().updated({"segments": {"eu": {}}}).segments == {}


def test_overrides_are_numbers_even_when_given_as_ints() -> None:
    faults = Faults().updated({"segments": {"eu": {"error_rate": 1, "latency_multiplier": 2}}})
    assert faults.segments == {"eu": {"error_rate": 1.0, "latency_multiplier": 2.0}}
    assert all(type(v) is float for v in faults.segments["eu"].values())


def test_the_overrides_survive_a_round_trip_through_json_shape() -> None:
    # GET /admin/faults answers asdict(); POSTing that back changes nothing.
    faults = Faults().updated({"score_shift": 0.1, "segments": {"eu": {"error_rate": 0.3}}})
    assert Faults().updated(asdict(faults)) == faults


@pytest.mark.parametrize(
    ("segments", "error"),
    [
        ({"mars": {"error_rate": 0.3}}, "segments: unknown segments: mars"),
        ({"eu": {"typo": 0.3}}, "segments.eu: unknown faults: typo"),
        ({"eu": {"segments": {}}}, "segments.eu: unknown faults: segments"),
        ({"eu": {"error_rate": 1.5}}, "out of range: segments.eu.error_rate=1.5"),
        ({"us": {"added_latency_seconds": -0.1}}, "segments.us.added_latency_seconds=-0.1"),
        ({"us": {"latency_multiplier": 1001}}, "segments.us.latency_multiplier=1001"),
        ({"apac": {"score_shift": -2}}, "segments.apac.score_shift=-2"),
        ({"eu": {"error_rate": "0.3"}}, "segments.eu.error_rate must be a number"),
        ({"eu": {"error_rate": True}}, "segments.eu.error_rate must be a number"),
        ({"eu": {"error_rate": None}}, "segments.eu.error_rate must be a number"),
        ({"eu": {"error_rate": float("nan")}}, "segments.eu.error_rate must be finite"),
        ({"eu": 0.3}, "segments.eu must be an object of faults"),
        ([{"eu": {}}], "segments must be an object"),
        ("eu", "segments must be an object"),
    ],
)
def test_invalid_overrides_are_refused_naming_the_field(segments: Any, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        Faults().updated({"segments": segments})


def test_the_top_level_faults_are_checked_as_before() -> None:
    with pytest.raises(ValueError, match=re.escape("out of range: error_rate=1.5")):
        Faults().updated({"error_rate": 1.5})
    with pytest.raises(ValueError, match=r"unknown faults: typo; known: .*'segments'"):
        Faults().updated({"typo": 0.1})
    with pytest.raises(ValueError, match="score_shift must be a number"):
        Faults().updated({"score_shift": "high"})


def test_validated_checks_overrides_built_in_python_too() -> None:
    with pytest.raises(ValueError, match="segments: unknown segments: mars"):
        Faults(segments={"mars": {"error_rate": 0.1}}).validated()
    with pytest.raises(ValueError, match=r"out of range: segments\.eu\.error_rate=2"):
        Faults(segments={"eu": {"error_rate": 2}}).validated()
    with pytest.raises(ValueError, match=re.escape("segments.eu: unknown faults: typo")):
        Faults(segments={"eu": {"typo": 0.1}}).validated()


def test_a_failing_update_leaves_the_service_faults_alone() -> None:
    service = ModelService("rev", "1", Faults(segments={"eu": {"error_rate": 0.3}}))
    with pytest.raises(ValueError, match=re.escape("segments.us.error_rate=3")):
        service.update_faults({"error_rate": 0.1, "segments": {"us": {"error_rate": 3}}})
    assert service.faults == Faults(segments={"eu": {"error_rate": 0.3}})


def test_the_service_answers_a_segment_with_its_faults() -> None:
    service = ModelService(
        "rev", "1", Faults().updated({"segments": {"eu": {"error_rate": 1.0}}}), seed=1
    )
    for _ in range(20):
        assert service.predict(None, "eu")[0] == 500
        status, body = service.predict(None, "us")
        assert (status, body["segment"]) == (200, "us")


def test_drawn_segments_follow_the_weights_and_the_seed() -> None:
    service = ModelService("rev", "1", Faults(), seed=7)
    drawn = [service.draw_segment() for _ in range(6000)]
    for segment, weight in zip(SEGMENTS, SEGMENT_WEIGHTS, strict=True):
        # Binomial sd at most ~0.0065; five of them is far from flaky.
        assert abs(drawn.count(segment) / len(drawn) - weight) < 0.035
    again = ModelService("rev", "1", Faults(), seed=7)
    assert [again.draw_segment() for _ in range(6000)] == drawn
    # The default seed comes from the revision: reproducible without one.
    first = ModelService("rev-x", "1", Faults())
    second = ModelService("rev-x", "1", Faults())
    assert [first.draw_segment() for _ in range(50)] == [second.draw_segment() for _ in range(50)]


@pytest.mark.parametrize(
    ("flag", "error"),
    [
        ('{"mars": {"error_rate": 0.1}}', "unknown segments: mars"),
        ('{"eu": {"error_rate": 2}}', "segments.eu.error_rate=2"),
        ("{not json", "--segment-faults is not JSON"),
    ],
)
def test_the_segment_faults_flag_is_checked_at_start(
    flag: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--port", "0", "--revision", "r", "--model-version", "1", "--segment-faults", flag]
    assert main(argv) == 2
    assert error in capsys.readouterr().err
