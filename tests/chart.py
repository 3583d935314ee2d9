"""Running helm on the chart in tests: values always go through a file.

A values file rather than ``--set``: values such as ``"bad tag!"`` need no
shell-style escaping, so a test states exactly the value a user would write.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "modelcanary"


def write_values(values: dict[str, Any], directory: Path) -> Path:
    path = directory / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_helm(helm: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=timeout
    )
