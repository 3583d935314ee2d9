"""``DEMO_FAST=1 make demo`` tells the whole story, and ``make demo-down`` ends it.

The demo is a new user's first contact, so it runs here exactly as the README
says, through make, and is judged by what the operator recorded (the summary
the demo builds from the ModelDeployment's status): one promotion, one
automatic rollback for the right reason, one passed drill with a time to
restore. The cluster must still answer afterwards, since the user is told to
explore it, and must be gone after ``make demo-down``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from e2e.harness import Toolchain

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def make(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DEMO_FAST": "1"},
    )


def test_make_demo_tells_the_story_and_leaves_the_cluster_up(
    tmp_path: Path, toolchain: Toolchain
) -> None:
    cluster = tmp_path / "cluster"
    try:
        done = make("demo", f"CLUSTER_DIR={cluster}", timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        summary = json.loads((cluster / "demo-summary.json").read_text())

        outcomes = [(r["version"], r["outcome"]) for r in summary["revisions"]]
        assert outcomes == [("1.0.0", "Promoted"), ("1.1.0", "Promoted"), ("2.0.0", "RolledBack")]
        first, good, bad = summary["revisions"]
        assert good["reason"] == "passed analysis"
        assert bad["reason"].startswith("errors: ")  # all slices pooled, or one of them
        assert "failed vs stable" in bad["reason"]
        assert summary["stableRevision"] == good["revision"]
        assert summary["chapters"][1]["weights"] == [10, 50, 100]

        [drill] = summary["drills"]
        assert drill["mode"] == "live"
        assert drill["succeeded"] is True
        assert 0 < drill["timeToRestoreSeconds"] < 30

        assert Path(summary["report"]).is_file(), summary["report"]
        assert "<svg" in Path(summary["report"]).read_text()

        printed = done.stdout
        assert "Summary" in printed
        assert "rolled back automatically: errors" in printed
        assert f"export KUBECONFIG={summary['kubeconfig']}" in printed
        assert "make demo-down" in printed

        # Left up for the user to explore with the printed kubeconfig.
        explore = subprocess.run(
            [
                *(str(toolchain.kubectl), "--kubeconfig", summary["kubeconfig"], "-n", "demo"),
                *("get", "modeldeployment", summary["name"], "-o", "json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert explore.returncode == 0, explore.stderr
        history = json.loads(explore.stdout)["status"]["history"]
        assert [entry["revision"] for entry in history] == [
            bad["revision"],
            good["revision"],
            first["revision"],
        ]
    finally:
        down = make("demo-down", f"CLUSTER_DIR={cluster}", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not (cluster / "state.json").exists()
    assert "kube-apiserver" in down.stdout
