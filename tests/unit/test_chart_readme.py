"""The chart's README documents every value, with values.yaml's default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelcanary"
pytestmark = pytest.mark.unit

# A table row: | `key` | `default` | description |
ROW = re.compile(
    r"^\|\s*`(?P<key>[A-Za-z0-9_.]+)`\s*\|\s*`(?P<default>[^`]*)`\s*\|(?P<doc>.*)\|\s*$"
)


def _leaves(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # An empty map or list is a leaf: the user fills it in whole.
    leaves: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def _values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return _leaves(loaded)


def _rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in (CHART / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match["key"] not in rows, f"{match['key']} is documented twice"
            rows[match["key"]] = (match["default"], match["doc"].strip())
    return rows


def test_every_value_has_a_row_in_the_readme_table() -> None:
    missing = sorted(set(_values()) - set(_rows()))
    assert not missing, f"values.yaml keys missing from README.md: {missing}"


def test_every_readme_row_names_a_real_value() -> None:
    unknown = sorted(set(_rows()) - set(_values()))
    assert not unknown, f"README.md documents keys values.yaml lacks: {unknown}"


def test_readme_defaults_match_values_yaml() -> None:
    rows = _rows()
    wrong = {
        key: (rows[key][0], _shown(value))
        for key, value in _values().items()
        if key in rows and rows[key][0] != _shown(value)
    }
    assert not wrong, f"README default vs values.yaml: {wrong}"


def test_every_readme_row_has_a_description() -> None:
    assert all(doc for _default, doc in _rows().values())


def test_every_top_level_value_is_in_the_schema() -> None:
    # The schema refuses unknown keys, so a value it lacks could never be set.
    schema = json.loads((CHART / "values.schema.json").read_text())
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(loaded) <= set(schema["properties"])
