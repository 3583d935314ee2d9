"""The documentation stays true: the API reference is what the models generate,
it names every field, every relative link leads somewhere, and every metrics
cookbook recipe is an ``analysis`` block the models accept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from modelcanary.api.analysis import (
    Analysis,
)
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelcanary.api.reference import models_of, render
from modelcanary.api.rollbackdrill import RollbackDrillSpec, RollbackDrillStatus
from modelcanary.promql.templates import validate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
REFERENCE = DOCS / "api-reference.md"
COOKBOOK = DOCS / "metrics-cookbook.md"
ROOTS: tuple[type[BaseModel], ...] = (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RollbackDrillSpec,
    RollbackDrillStatus,
)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = "".join(c for c in text if c.isalnum() or c in " -")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    found = {slug(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+)$", text, re.MULTILINE)}
    found |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    return found


def recipes() -> list[dict[str, Any]]:
    """The YAML blocks of the cookbook that are analysis fragments (they have metrics)."""
    blocks = [yaml.safe_load(body) for kind, body in _FENCE.findall(COOKBOOK.read_text())]
    return [block for block in blocks if isinstance(block, dict) and "metrics" in block]


# --------------------------------------------------------------------------- API reference


def test_api_reference_is_what_the_models_generate() -> None:
    assert REFERENCE.read_text() == render(), "docs/api-reference.md is stale: run make docs"


@pytest.mark.parametrize("root", ROOTS, ids=lambda model: model.__name__)
def test_api_reference_names_every_field_of_every_model(root: type[BaseModel]) -> None:
    text = REFERENCE.read_text()
    for name, model in models_of(root).items():
        assert f"\n### {name}\n" in text, f"no section for {name}"
        section = text.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
        for python_name, field in model.model_fields.items():
            alias = field.alias or python_name
            assert f"| `{alias}` |" in section, f"{name}.{alias} is missing"


def test_api_reference_shows_types_defaults_and_constraints() -> None:
    text = REFERENCE.read_text()
    assert "| `noData` | string | no | `hold` | one of `hold`, `fail`, `pass` |" in text
    assert "| `failureLimit` | integer | no | `0` | >= 0; <= 100 |" in text
    assert "| `analysis` | [Analysis](#analysis) | no |" in text
    assert "| `steps` | array of [Step](#step) | yes |" in text
    assert "exactly one router must be set" in text


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    text = _CODE_SPAN.sub("", _FENCE.sub("", path.read_text()))
    broken: list[str] = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http(s):, mailto: and the like
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{path.relative_to(REPO)}: {broken}"


def test_top_level_readme_links_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    for page in ("docs/README.md", "docs/concepts.md", "docs/metrics-cookbook.md"):
        assert f"({page}" in readme
    assert "docs/api-reference.md" in readme


def test_docs_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"({page.name}" in index, f"docs/README.md does not link {page.name}"


# --------------------------------------------------------------------------- cookbook


def test_the_cookbook_has_a_recipe_per_server_and_for_drift() -> None:
    text = COOKBOOK.read_text()
    for name in (
        "request_predict_seconds",
        "revision_app_request_count",
        "model_infer_request_failure_total",
        "nv_inference_request_failure",
        "nv_inference_queue_duration_us",
        "ts_inference_requests_total",
        "ts_queue_latency_microseconds",
        "model_prediction_score_bucket",
    ):
        assert name in text, name
    assert len(recipes()) >= 8


@pytest.mark.parametrize("index", range(len(recipes())))
def test_every_cookbook_recipe_is_a_valid_analysis_block(index: int) -> None:
    recipe = recipes()[index]
    analysis = Analysis.model_validate(
        {"prometheus": {"address": "http://prometheus.monitoring:9090"}, **recipe}
    )
    assert analysis.metrics
    queries = [query for metric in analysis.metrics for query in metric.queries().values()]
    if analysis.min_samples is not None:
        queries.append(analysis.min_samples.query)
    for query in queries:
        validate(query)  # every placeholder known and inside a string
        assert 'revision="{{revision}}"' in query
