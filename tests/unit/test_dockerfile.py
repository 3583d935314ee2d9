"""The operator image's Dockerfile keeps its invariants (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def _instructions() -> list[tuple[str, str]]:
    # Join continuation lines and drop comments, then split "KEYWORD rest".
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _base_images() -> list[str]:
    args = dict(
        rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest
    )
    images = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            image = rest.split()[0]
            match = re.fullmatch(r"\$\{(\w+)\}", image)
            images.append(args[match[1]] if match else image)
    return images


def test_every_base_image_is_python_slim_pinned_by_version_and_digest() -> None:
    images = _base_images()
    assert images
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", image), image


def test_no_image_or_tag_is_latest() -> None:
    assert ":latest" not in (REPO / "Dockerfile").read_text()


def test_the_final_stage_runs_as_the_non_root_uid_the_chart_enforces() -> None:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [rest for keyword, rest in instructions[last_from:] if keyword == "USER"]
    # Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert users == ["65532:65532"]


def test_the_image_runs_the_operator_by_default() -> None:
    instructions = dict(_instructions())
    assert json.loads(instructions["ENTRYPOINT"]) == ["modelcanary"]
    assert json.loads(instructions["CMD"]) == ["run"]


def test_the_image_installs_the_project_not_a_copy_of_the_tree() -> None:
    runs = " ".join(rest for keyword, rest in _instructions() if keyword == "RUN")
    assert re.search(r"pip install\b.* \.(\s|$)", runs)
    assert "-e " not in runs


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # deny by default, then allow what the build copies
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for keyword, rest in _instructions()
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied <= allowed
