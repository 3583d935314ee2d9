"""Every PromQL query in the metrics cookbook parses, once the operator has filled
in its placeholders: checked by promtool, the parser Prometheus itself uses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelcanary.api.analysis import (
    Analysis,
)
from modelcanary.promql.templates import TemplateValues, render

pytestmark = pytest.mark.integration

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "metrics-cookbook.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
# Awkward on purpose: quotes, a backslash and a dot must all come out as data.
VALUES = TemplateValues(
    namespace="ml-prod",
    name="fraud-detector",
    revision="6f9c0e12ab",
    model='fraud"model\\x',
    version="1.5.0",
)


def cookbook_queries() -> list[tuple[str, str]]:
    """(recipe metric name, rendered query) for every query of every recipe.

    A count metric has several queries (an errors metric's failed and total),
    and each is checked on its own.
    """
    found: list[tuple[str, str]] = []
    for _, body in _FENCE.findall(COOKBOOK.read_text()):
        block: Any = yaml.safe_load(body)
        if not isinstance(block, dict) or "metrics" not in block:
            continue
        analysis = Analysis.model_validate({"prometheus": {"address": "http://p:9090"}, **block})
        for metric in analysis.metrics:
            for part, query in metric.queries().items():
                found.append((f"{metric.name}-{part}", render(query, VALUES)))
        if analysis.min_samples is not None:
            found.append(("min-samples", render(analysis.min_samples.query, VALUES)))
    return found


def promtool_check(
    tmp_path: Path, queries: list[tuple[str, str]]
) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin")
    assert promtool, "promtool comes with the prometheus package that make test installs"
    rules = [
        {"record": f"cookbook:{re.sub(r'[^a-z0-9]', '_', name)}:{index}", "expr": query}
        for index, (name, query) in enumerate(queries)
    ]
    rules_file = tmp_path / "cookbook-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "cookbook", "rules": rules}]}))
    return subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )


def test_every_cookbook_query_is_valid_promql(tmp_path: Path) -> None:
    queries = cookbook_queries()
    assert len(queries) >= 20
    checked = promtool_check(tmp_path, queries)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_the_check_would_catch_a_broken_query(tmp_path: Path) -> None:
    name, query = cookbook_queries()[0]
    refused = promtool_check(tmp_path, [(name, query.replace("(", "((", 1))])
    assert refused.returncode != 0
