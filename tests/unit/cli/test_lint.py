"""``modelcanary lint``: the operator's own models, offline, with field paths and exit codes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from modelcanary.cli import lint
from tests.api_cases import valid_model_deployment

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

DRILL = {
    "apiVersion": "modelcanary.io/v1alpha1",
    "kind": "RollbackDrill",
    "metadata": {"name": "fraud-drill"},
    "spec": {"modelDeployment": "fraud", "mode": "verify"},
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}}


def run(*files: Path | str) -> int:
    return lint.run(argparse.Namespace(files=[str(file) for file in files]))


def write(tmp_path: Path, *documents: object, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_there_are_examples_to_lint() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_lints_clean(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(example) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert out.startswith(f"{example}: ok (")
    # Each example holds at least one document lint actually validated.
    assert "(0 documents" not in out


def test_an_invalid_document_is_named_by_file_index_kind_name_and_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = valid_model_deployment("fraud")
    bad["spec"]["strategy"]["steps"][1] = {"setWeight": 150}
    path = write(tmp_path, SERVICE, bad, DRILL)
    assert run(path) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{path}: document 2 (ModelDeployment fraud): spec.strategy.steps[1].setWeight:"
        " Input should be less than or equal to 100"
    ]


def test_cross_field_rules_read_as_the_operator_words_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = valid_model_deployment("fraud")
    bad["spec"]["strategy"]["steps"] = [{"setWeight": 50}, {"setWeight": 20}]
    bad_drill = {**DRILL, "spec": {"modelDeployment": "fraud", "mode": "chaos", "extra": 1}}
    path = write(tmp_path, bad, bad_drill)
    assert run(path) == 1
    out = capsys.readouterr().out
    assert (
        f"{path}: document 1 (ModelDeployment fraud): spec.strategy: "
        "setWeight values must not decrease from one step to the next"
    ) in out
    assert f"{path}: document 2 (RollbackDrill fraud-drill): spec.mode: " in out
    assert f"{path}: document 2 (RollbackDrill fraud-drill): spec.extra: " in out


def test_other_kinds_and_empty_documents_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(SERVICE) + "---\n---\n" + yaml.safe_dump(DRILL))
    assert run(path) == 0
    assert capsys.readouterr().out == f"{path}: ok (1 document checked)\n"


def test_a_document_without_a_name_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nameless = {**DRILL, "metadata": {}}
    assert run(write(tmp_path, nameless)) == 1
    assert "(RollbackDrill): metadata.name: a name (or generateName) is required" in (
        capsys.readouterr().out
    )


def test_a_document_that_is_not_a_mapping_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    assert run(path) == 1
    assert "document 1 (?): a document must be a mapping" in capsys.readouterr().out


def test_unreadable_or_non_yaml_files_exit_2_and_the_others_are_still_linted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    invalid = write(tmp_path, {**DRILL, "metadata": {}}, name="invalid.yaml")
    assert run(broken, tmp_path / "missing.yaml", invalid, EXAMPLES[0]) == 2
    captured = capsys.readouterr()
    assert f"error: {broken}: not YAML" in captured.err
    assert f"error: {tmp_path / 'missing.yaml'}: cannot read" in captured.err
    assert f"{invalid}: document 1" in captured.out
    assert f"{EXAMPLES[0]}: ok" in captured.out


def test_any_invalid_file_makes_the_exit_code_1(tmp_path: Path) -> None:
    invalid = write(tmp_path, {**DRILL, "metadata": {}})
    assert run(EXAMPLES[0], invalid, EXAMPLES[1]) == 1
