"""The operator's own metrics: each ModelDeployment's series say its phase and the
analysis outcome (so an alert can tell a broken query, Error, from an outage or no
data), one series per enumeration rather than one per possible value, so that
10,000 objects stay a small page (docs/scale.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelcanary import object_series, telemetry
from modelcanary.api.judging import AnalysisStatus, MetricResult, Verdict
from modelcanary.api.modeldeployment import DrillMode, DrillSummary, ModelDeploymentStatus, Phase

pytestmark = pytest.mark.unit


def sample(family: str, **labels: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value(family, labels)


def outcome(namespace: str, name: str, which: str) -> float | None:
    return sample("modelcanary_analysis_outcome", namespace=namespace, name=name, outcome=which)


def judged(outcome: str, *results: MetricResult) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase=Phase.PROGRESSING,
        analysis=AnalysisStatus(outcome=outcome, reason="", results=list(results)),
    )


def series_of(namespace: str, name: str) -> list[str]:
    page = generate_latest(telemetry.REGISTRY).decode()
    key = f'name="{name}",namespace="{namespace}"'
    return [line for line in page.splitlines() if key in line]


def test_the_outcome_is_one_series_for_the_latest_outcome_and_is_forgotten() -> None:
    broken = MetricResult(metric="typo", verdict=Verdict.ERROR, message="bad_data")
    telemetry.record_status("telemetry-ns", "fraud", judged("Error", broken))
    assert outcome("telemetry-ns", "fraud", "Error") == 1
    for other in ("Pass", "Fail", "NoData", "Outage"):
        assert outcome("telemetry-ns", "fraud", other) is None
    verdict = sample(
        "modelcanary_analysis_verdict",
        namespace="telemetry-ns",
        name="fraud",
        metric="typo",
        verdict="Error",
    )
    assert verdict == 1
    telemetry.record_status("telemetry-ns", "fraud", judged("Pass"))
    assert outcome("telemetry-ns", "fraud", "Error") is None
    assert outcome("telemetry-ns", "fraud", "Pass") == 1
    telemetry.record_status("telemetry-ns", "fraud", ModelDeploymentStatus())
    assert outcome("telemetry-ns", "fraud", "Pass") is None  # no canary judged: no series
    telemetry.forget("telemetry-ns", "fraud")
    assert series_of("telemetry-ns", "fraud") == []


def test_the_phase_is_one_series_whose_label_follows_the_phase() -> None:
    telemetry.record_status("phase-ns", "fraud", ModelDeploymentStatus(phase=Phase.PROGRESSING))
    assert sample("modelcanary_phase", namespace="phase-ns", name="fraud", phase="Progressing") == 1
    telemetry.record_status("phase-ns", "fraud", ModelDeploymentStatus(phase=Phase.ROLLED_BACK))
    phases = [line for line in series_of("phase-ns", "fraud") if "modelcanary_phase{" in line]
    assert phases == ['modelcanary_phase{name="fraud",namespace="phase-ns",phase="RolledBack"} 1.0']
    telemetry.forget("phase-ns", "fraud")


def test_a_model_at_rest_has_three_series_not_sixteen() -> None:
    telemetry.record_status("rest-ns", "fraud", ModelDeploymentStatus(phase=Phase.HEALTHY))
    telemetry.record_events("rest-ns", "fraud", ["Promoted"])
    assert sorted(line.split("{")[0] for line in series_of("rest-ns", "fraud")) == [
        "modelcanary_canary_weight_percent",
        "modelcanary_phase",
        "modelcanary_promotions_total",  # and no modelcanary_promotions_created
    ]
    telemetry.forget("rest-ns", "fraud")


def test_the_last_canarys_metrics_stay_until_the_next_canary_has_results() -> None:
    slow = MetricResult(metric="p99", verdict=Verdict.FAIL, candidate=0.4, stable=0.2)
    errors = MetricResult(metric="errors", verdict=Verdict.PASS, e_value=1.5, threshold=20.0)
    telemetry.record_status("rows-ns", "fraud", judged("Fail", slow))
    telemetry.record_status("rows-ns", "fraud", ModelDeploymentStatus(phase=Phase.ROLLED_BACK))
    value = sample(
        "modelcanary_analysis_value",
        namespace="rows-ns",
        name="fraud",
        metric="p99",
        revision_role="candidate",
    )
    assert value == 0.4
    telemetry.record_status("rows-ns", "fraud", judged("Pass", errors))
    lines = series_of("rows-ns", "fraud")
    assert not [line for line in lines if 'metric="p99"' in line]  # the next canary's set
    assert (
        sample(
            "modelcanary_analysis_evidence",
            namespace="rows-ns",
            name="fraud",
            metric="errors",
            kind="threshold",
        )
        == 20.0
    )
    telemetry.forget("rows-ns", "fraud")


def test_the_last_drill_success_comes_from_the_history() -> None:
    ended = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    drill = DrillSummary(
        name="d1", mode=DrillMode.VERIFY, started_at=ended, finished_at=ended, succeeded=True
    )
    telemetry.record_status("drill-ns", "fraud", ModelDeploymentStatus(drill_history=[drill]))
    stamp = sample("modelcanary_drill_last_success_timestamp", namespace="drill-ns", name="fraud")
    assert stamp == ended.timestamp()
    telemetry.forget("drill-ns", "fraud")


def test_an_unchanged_status_writes_no_new_record() -> None:
    records = object_series.ObjectRecords()
    records.record(("ns", "fraud"), ModelDeploymentStatus(phase=Phase.HEALTHY))
    [(_, first)] = records.snapshot()
    records.record(("ns", "fraud"), ModelDeploymentStatus(phase=Phase.HEALTHY))
    [(_, second)] = records.snapshot()
    assert second is first


def test_asking_for_one_family_builds_that_family_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(record: object_series.ObjectRecord) -> Iterator[tuple[list[str], float]]:
        raise AssertionError("another family was built")

    monkeypatch.setattr(object_series, "_weight", never)
    records = object_series.ObjectRecords()
    registry = CollectorRegistry(auto_describe=True)
    object_series.register(records, registry)
    records.record(("ns", "fraud"), judged("Pass"))
    asked = registry.restricted_registry(["modelcanary_phase"])
    assert [family.name for family in asked.collect()] == ["modelcanary_phase"]
