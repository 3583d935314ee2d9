"""Run the ``modelcanary`` command as a user would: a fresh process, a bare environment.

The environment holds no KUBECONFIG and no HOME, so a test says exactly which
credentials the command gets (or that it gets none).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_modelcanary(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    return subprocess.run(
        [sys.executable, "-m", "modelcanary", *args, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "PYTHONPATH": f"{REPO / 'operator'}:{REPO}",
        },
    )
