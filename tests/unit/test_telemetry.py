"""The operator's own metrics name the analysis outcome, so an alert can tell a broken
query (Error) from an outage or no data."""

from __future__ import annotations

import pytest

from modelcanary import telemetry
from modelcanary.api.judging import AnalysisStatus, MetricResult, Verdict
from modelcanary.api.modeldeployment import ModelDeploymentStatus

pytestmark = pytest.mark.unit


def outcome(namespace: str, name: str, which: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value(
        "modelcanary_analysis_outcome", {"namespace": namespace, "name": name, "outcome": which}
    )


def test_the_outcome_gauge_is_1_for_the_latest_outcome_only_and_is_forgotten() -> None:
    broken = MetricResult(metric="typo", verdict=Verdict.ERROR, message="bad_data")
    status = ModelDeploymentStatus(
        analysis=AnalysisStatus(outcome="Error", reason="typo: bad_data", results=[broken])
    )
    telemetry.record_status("telemetry-ns", "fraud", status)
    assert outcome("telemetry-ns", "fraud", "Error") == 1
    for other in ("Pass", "Fail", "NoData", "Outage"):
        assert outcome("telemetry-ns", "fraud", other) == 0
    verdict = telemetry.REGISTRY.get_sample_value(
        "modelcanary_analysis_verdict",
        {"namespace": "telemetry-ns", "name": "fraud", "metric": "typo", "verdict": "Error"},
    )
    assert verdict == 1
    telemetry.record_status("telemetry-ns", "fraud", ModelDeploymentStatus())
    assert outcome("telemetry-ns", "fraud", "Error") == 0  # no canary judged: all 0
    telemetry.forget("telemetry-ns", "fraud")
    assert outcome("telemetry-ns", "fraud", "Error") is None
