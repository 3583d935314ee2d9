"""The /metrics bench measures a page with the objects it recorded in it."""

from __future__ import annotations

import pytest

from bench import metrics_page
from modelcanary import telemetry

pytestmark = pytest.mark.unit


def test_a_side_renders_every_object_it_recorded() -> None:
    try:
        result = metrics_page.measure(objects=5, canaries=2, scrapes=3)
    finally:
        for index in range(5):
            telemetry.forget(f"scale-{index % 10}", f"model-{index:05d}")
    assert len(result["renders_s"]) == 3
    assert result["lines"] > 5 * 2  # each object has at least its phase and weight
    assert "| this tree | 5 |" in metrics_page.row("this tree", result)
