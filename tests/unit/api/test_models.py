"""The pydantic models: what they accept, what they refuse, and in whose words."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from modelcanary.api import ModelDeployment, RollbackDrill, parse_duration
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    Predictor,
)
from modelcanary.api.validation import InvalidSpecError, field_path, parse
from tests.api_cases import (
    INVALID_MODEL_DEPLOYMENTS,
    InvalidCase,
    invalid_manifest,
    valid_model_deployment,
)

pytestmark = pytest.mark.unit
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_the_valid_fixture_parses_with_its_values() -> None:
    manifest = valid_model_deployment()
    model = ModelDeployment.model_validate(manifest)
    assert model.spec.strategy.weights() == [10, 50, 100]
    assert model.spec.traffic.router_kind() == "gatewayAPI"
    assert model.spec.analysis is not None
    assert model.spec.analysis.metrics[1].max_relative_to_stable == 1.5
    assert model.spec.to_dict()["strategy"]["steps"][3] == {"pause": {}}


@pytest.mark.parametrize("case", INVALID_MODEL_DEPLOYMENTS, ids=lambda case: case.id)
def test_models_refuse_each_invalid_manifest_naming_the_field(case: InvalidCase) -> None:
    manifest = invalid_manifest(case)
    with pytest.raises(InvalidSpecError) as refused:
        parse(ModelDeploymentSpec, manifest["spec"], prefix="spec")
    paths = [error.path for error in refused.value.errors]
    # A rule about several fields is reported on their parent, as CEL does
    # without a fieldPath; it must never point somewhere unrelated.
    assert any(case.field.startswith(path) for path in paths), (case.field, paths)


def test_error_message_carries_our_words_not_pydantic_internals() -> None:
    manifest = valid_model_deployment()
    manifest["spec"]["strategy"]["steps"] = [
        {"setWeight": 50},
        {"setWeight": 10},
        {"setWeight": 100},
    ]
    with pytest.raises(InvalidSpecError) as refused:
        parse(ModelDeploymentSpec, manifest["spec"], prefix="spec")
    assert (
        str(refused.value)
        == "spec.strategy: setWeight values must not decrease from one step to the next"
    )


def test_field_path_formats_like_kubectl() -> None:
    assert (
        field_path(("strategy", "steps", 2, "setWeight"), "spec")
        == "spec.strategy.steps[2].setWeight"
    )
    assert field_path(()) == ""


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_parses(example: Path) -> None:
    for document in yaml.safe_load_all(example.read_text()):
        model = ModelDeployment if document["kind"] == "ModelDeployment" else RollbackDrill
        parsed = model.model_validate(document)
        assert parsed.metadata["name"]


def test_examples_cover_every_router_metric_kind_and_a_drill() -> None:
    documents = [d for p in EXAMPLES.glob("*.yaml") for d in yaml.safe_load_all(p.read_text())]
    kinds = {d["kind"] for d in documents}
    assert kinds == {"ModelDeployment", "RollbackDrill"}
    routers = {
        ModelDeployment.model_validate(d).spec.traffic.router_kind()
        for d in documents
        if d["kind"] == "ModelDeployment"
    }
    assert routers == {"gatewayAPI", "replicas"}
    full = ModelDeployment.model_validate(yaml.safe_load((EXAMPLES / "full.yaml").read_text()))
    assert full.spec.analysis is not None
    assert {m.name for m in full.spec.analysis.metrics} == {
        "error-rate",
        "p99-latency-seconds",
        "prediction-drift",
    }


def test_revision_is_a_stable_hash_of_the_predictor_only() -> None:
    manifest = valid_model_deployment()
    first = Predictor.model_validate(manifest["spec"]["predictor"])
    same = Predictor.model_validate(valid_model_deployment("another-name")["spec"]["predictor"])
    assert first.revision() == same.revision()
    assert len(first.revision()) == 10
    manifest["spec"]["predictor"]["model"]["version"] = "1.5.1"
    assert Predictor.model_validate(manifest["spec"]["predictor"]).revision() != first.revision()


def test_defaults_match_the_documented_ones() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "predictor": valid_model_deployment()["spec"]["predictor"],
            "traffic": {"replicas": {}},
            "strategy": {"steps": [{"setWeight": 100}]},
            "analysis": {"prometheus": {"address": "http://p:9090"}},
        }
    )
    assert spec.analysis is not None
    assert spec.analysis.interval == "15s"
    assert spec.analysis.no_data == "hold"
    assert spec.analysis.outage.then == "pause"
    assert spec.analysis.failure_limit == 0
    assert spec.rollback.automatic is True
    assert spec.revision_history_limit == 10
    assert spec.strategy.bake.duration == "0s"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m30s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "1d", "-1s", "1 m", "s", "1m 30s"])
def test_parse_duration_refuses_what_go_would_not_parse(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_rollback_drill_defaults_and_refusals() -> None:
    drill = RollbackDrill.model_validate(
        {"metadata": {"name": "d"}, "spec": {"modelDeployment": "fraud-detector"}}
    )
    assert drill.spec.mode == "verify"
    assert drill.spec.timeout == "10m"
    with pytest.raises(InvalidSpecError, match=r"spec\.mode"):
        parse(RollbackDrill, {"spec": {"modelDeployment": "x", "mode": "chaos"}})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            'sum(x{revision="{{revison}}"})',
            "unknown placeholder {{revison}}; a template may use {{namespace}}",
        ),
        ("sum({{model}}_requests_total)", "placeholder {{model}} at offset 4 is outside a quoted"),
        ('sum(x{revision="{{revision}"})', "malformed placeholder at offset 16"),
    ],
)
def test_a_template_the_api_server_cannot_check_fully_is_refused_by_the_models(
    query: str, message: str
) -> None:
    """CEL checks placeholder names; the models also name the placeholder and check
    where it stands, which no regular expression over the whole text can."""
    manifest = valid_model_deployment()
    manifest["spec"]["analysis"]["metrics"][2]["errors"]["failed"] = query
    with pytest.raises(InvalidSpecError) as refused:
        parse(ModelDeploymentSpec, manifest["spec"], prefix="spec")
    [error] = refused.value.errors
    assert error.path == "spec.analysis.metrics[2].errors.failed"
    assert message in error.message


def test_metric_kinds_and_their_queries_by_part() -> None:
    analysis = ModelDeployment.model_validate(valid_model_deployment()).spec.analysis
    assert analysis is not None
    kinds = {metric.name: metric.kind for metric in analysis.metrics}
    assert kinds == {
        "error-rate": "query",
        "latency": "query",
        "errors": "errors",
        "slower": "latency",
        "scores": "distribution",
    }
    assert [m.name for m in analysis.count_metrics] == ["errors", "slower", "scores"]
    assert set(analysis.metrics[2].queries()) == {"failed", "total"}
    assert set(analysis.metrics[3].queries()) == {"buckets"}
    assert analysis.metrics[3].latency is not None
    assert analysis.metrics[3].latency.tolerance == 0.2


def test_a_predictor_without_autoscaling_keeps_the_revision_it_had_before_the_field() -> None:
    """Pinned: a new hash would start a canary for every ModelDeployment on upgrade."""
    spec = ModelDeploymentSpec.model_validate(valid_model_deployment()["spec"])
    assert "autoscaling" not in spec.predictor.to_dict()
    assert spec.predictor.revision() == "4e3f0ecb3e"


def test_autoscaling_is_part_of_the_revision() -> None:
    manifest = valid_model_deployment()
    plain = ModelDeploymentSpec.model_validate(manifest["spec"])
    manifest["spec"]["predictor"]["autoscaling"] = {
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ],
    }
    scaled = ModelDeploymentSpec.model_validate(manifest["spec"])
    assert scaled.predictor.revision() != plain.predictor.revision()
    # The MetricSpec round-trips exactly as written, for the HPA.
    assert scaled.predictor.to_dict()["autoscaling"] == manifest["spec"]["predictor"]["autoscaling"]
