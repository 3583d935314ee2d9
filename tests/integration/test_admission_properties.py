"""Properties that tie the pydantic models to the generated CRD on a real API server.

1. Every spec the models accept survives YAML and the API server unchanged,
   and parses back into the same model.
2. For the cross-field rules written twice (CEL in the CRD, validators in the
   models), the API server and the models agree on every generated spec: what
   one refuses, the other refuses too.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.harness import ControlPlane
from modelcanary.api.base import LABEL_VALUE_PATTERN, parse_duration
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
)
from modelcanary.api.validation import InvalidSpecError, parse

pytestmark = pytest.mark.integration
PATH = "/apis/modelcanary.io/v1alpha1/namespaces/{namespace}/modeldeployments"
PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_names = (f"prop-{n}" for n in itertools.count())

durations = st.builds(
    lambda parts: "".join(f"{n}{unit}" for n, unit in parts),
    st.lists(
        st.tuples(st.integers(0, 500), st.sampled_from(["ms", "s", "m", "h"])),
        min_size=1,
        max_size=3,
    ),
)
label_values = st.from_regex(LABEL_VALUE_PATTERN, fullmatch=True).filter(lambda v: len(v) <= 63)
dns_labels = st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
ratios = st.floats(min_value=0, max_value=100, allow_nan=False)
queries = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=60)


@st.composite
def steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    weights = [*sorted(draw(st.lists(st.integers(0, 100), min_size=0, max_size=4))), 100]
    result: list[dict[str, Any]] = []
    for weight in weights:
        result.append({"setWeight": weight})
        if draw(st.booleans()):
            pause = draw(st.one_of(st.just({}), st.builds(lambda d: {"duration": d}, durations)))
            result.append({"pause": pause})
    return result


@st.composite
def bounded_metric(draw: st.DrawFn, name: str) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name, "query": draw(queries)}
    low, high = sorted([draw(finite), draw(finite)])
    relative_low, relative_high = sorted([draw(ratios), draw(ratios)])
    chosen = draw(st.sets(st.sampled_from(["min", "max", "minRel", "maxRel"]), min_size=1))
    for key, value in (("min", low), ("max", high)):
        if key in chosen:
            metric[key] = value
    if "minRel" in chosen:
        metric["minRelativeToStable"] = relative_low
    if "maxRel" in chosen:
        metric["maxRelativeToStable"] = relative_high
    return metric


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    router = draw(
        st.one_of(
            st.builds(lambda r: {"gatewayAPI": {"httpRoute": r}}, dns_labels),
            st.just({"replicas": {}}),
            st.builds(lambda s: {"replicas": {"service": s}}, dns_labels),
        )
    )
    spec: dict[str, Any] = {
        "predictor": {
            "model": {
                "name": draw(label_values),
                "version": draw(label_values),
                "uri": "s3://models/" + draw(dns_labels),
            },
            "replicas": draw(st.integers(1, 1000)),
            "template": {
                "spec": {
                    "containers": [
                        {"name": "server", "image": "server:" + draw(dns_labels), "args": ["--x"]}
                    ],
                    "terminationGracePeriodSeconds": draw(st.integers(0, 60)),
                }
            },
        },
        "traffic": {"port": draw(st.integers(1, 65535)), **router},
        "strategy": {"steps": draw(steps())},
    }
    if draw(st.booleans()):
        spec["strategy"]["bake"] = {"duration": draw(durations)}
    if draw(st.booleans()):
        spec["strategy"]["scaleDownDelay"] = draw(durations)
    if draw(st.booleans()):
        spec["strategy"]["progressDeadline"] = draw(
            durations.filter(lambda d: parse_duration(d).total_seconds() >= 1)
        )
    if draw(st.booleans()):
        names = draw(st.lists(dns_labels, min_size=0, max_size=3, unique=True))
        spec["analysis"] = {
            "interval": draw(durations),
            "prometheus": {"address": "http://prometheus:9090"},
            "failureLimit": draw(st.integers(0, 100)),
            "noData": draw(st.sampled_from(["hold", "fail", "pass"])),
            "outage": {
                "holdFor": draw(durations),
                "then": draw(st.sampled_from(["hold", "pause", "rollback"])),
            },
            "metrics": [draw(bounded_metric(name)) for name in names],
        }
    if draw(st.booleans()):
        spec["drill"] = {
            "schedule": "*/5 * * * *",
            "mode": draw(st.sampled_from(["verify", "warm", "live"])),
        }
    return spec


def _contains(whole: Any, part: Any) -> bool:
    """Every key and value of ``part`` is in ``whole`` unchanged (defaults may be added)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and _contains(whole[k], v) for k, v in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list)
            and len(whole) == len(part)
            and all(_contains(w, p) for w, p in zip(whole, part, strict=True))
        )
    return bool(whole == part)


def _manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": next(_names)},
        "spec": spec,
    }


@PROPERTY_SETTINGS
@given(spec=valid_specs())
def test_accepted_specs_round_trip_through_yaml_and_the_api_server(
    control_plane: ControlPlane, modelcanary_crds: list[str], namespace: str, spec: dict[str, Any]
) -> None:
    model = ModelDeploymentSpec.model_validate(spec)
    through_yaml = yaml.safe_load(yaml.safe_dump(_manifest(model.to_dict())))
    status, created = control_plane.request("POST", PATH.format(namespace=namespace), through_yaml)
    assert status == 201, created
    name = through_yaml["metadata"]["name"]
    status, read_back = control_plane.request("GET", PATH.format(namespace=namespace) + f"/{name}")
    assert status == 200
    assert _contains(read_back["spec"], model.to_dict())
    assert ModelDeploymentSpec.model_validate(read_back["spec"]) == model


@st.composite
def perhaps_invalid_steps(draw: st.DrawFn) -> list[dict[str, Any]]:
    low, high = sorted(draw(st.lists(st.integers(0, 99), min_size=2, max_size=2, unique=True)))
    shape = draw(st.sampled_from(["rising", "falling", "short-of-100", "pauses-only", "malformed"]))
    weights = {
        "rising": [low, high, 100],
        "falling": [high, low, 100],
        "short-of-100": [low, high],
        "pauses-only": [],
        "malformed": [low, 100],
    }[shape]
    result: list[dict[str, Any]] = []
    for weight in weights:
        result.append({"setWeight": weight})
        if draw(st.booleans()):
            result.append({"pause": {}})
    if shape == "pauses-only":
        result.append({"pause": {}})
    if shape == "malformed":
        step = draw(st.sampled_from([{}, {"setWeight": 50, "pause": {}}]))
        result.insert(draw(st.integers(0, len(result))), step)
    return result


@st.composite
def perhaps_invalid_traffic(draw: st.DrawFn) -> dict[str, Any]:
    traffic: dict[str, Any] = {"port": 8080}
    if draw(st.booleans()):
        traffic["gatewayAPI"] = {"httpRoute": "route", "create": draw(st.booleans())}
        if draw(st.booleans()):
            traffic["gatewayAPI"]["parentRefs"] = [{"name": "gw"}]
    if draw(st.booleans()):
        traffic["replicas"] = {}
    return traffic


@st.composite
def perhaps_invalid_metric(draw: st.DrawFn) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": "m", "query": "up"}
    for key in ("min", "max", "minRelativeToStable", "maxRelativeToStable"):
        if draw(st.booleans()):
            metric[key] = draw(st.floats(0, 10, allow_nan=False))
    return metric


@st.composite
def perhaps_invalid_specs(draw: st.DrawFn, dimension: str) -> dict[str, Any]:
    """A valid spec with one cross-field part drawn freely, so each rule is seen on its own."""
    spec = draw(valid_specs())
    if dimension == "steps":
        spec["strategy"]["steps"] = draw(perhaps_invalid_steps())
    elif dimension == "traffic":
        spec["traffic"] = draw(perhaps_invalid_traffic())
    elif dimension == "deadline":
        spec["strategy"]["progressDeadline"] = draw(durations)
    else:
        spec["analysis"] = {
            "prometheus": {"address": "http://p:9090"},
            "metrics": [draw(perhaps_invalid_metric())],
        }
    return spec


@pytest.mark.parametrize("dimension", ["steps", "traffic", "deadline", "bounds"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_api_server_and_models_agree_on_cross_field_rules(
    control_plane: ControlPlane,
    modelcanary_crds: list[str],
    namespace: str,
    dimension: str,
    data: st.DataObject,
) -> None:
    spec = data.draw(perhaps_invalid_specs(dimension))
    status, response = control_plane.request(
        "POST", PATH.format(namespace=namespace), _manifest(spec), {"dryRun": "All"}
    )
    assert status in (201, 422), response
    try:
        parse(ModelDeploymentSpec, spec, prefix="spec")
    except InvalidSpecError as refused:
        models_say = f"refused: {refused}"
    else:
        models_say = "admitted"
    server_says = "admitted" if status == 201 else f"refused: {response['message']}"
    assert (models_say == "admitted") == (server_says == "admitted"), (
        f"models {models_say}; API server {server_says}"
    )
