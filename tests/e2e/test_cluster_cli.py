"""`make cluster-up` / `make cluster-down`: a cluster that outlives the command,
and leaves nothing behind once stopped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import Toolchain
from e2e.harness.kubernetes import processes_mentioning, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2e.harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_cluster_up_leaves_a_usable_cluster_and_down_stops_every_process(
    tmp_path: Path, toolchain: Toolchain
) -> None:
    cluster_dir = tmp_path / "cluster"
    try:
        up = _harness("up", "--dir", str(cluster_dir), "--tier", "full", "--prometheus")
        assert up.returncode == 0, up.stderr
        found = re.search(r"^export KUBECONFIG=(\S+)$", up.stdout, re.MULTILINE)
        assert found, up.stdout
        kubeconfig = found.group(1)
        assert re.search(r"^Prometheus: http://127\.0\.0\.1:\d+", up.stdout, re.MULTILINE)

        # The command has exited; the cluster it started keeps serving.
        nodes = subprocess.run(
            [str(toolchain.kubectl), "--kubeconfig", kubeconfig, "get", "nodes", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.splitlines()
        assert len(nodes) == 3
        assert all(line.split()[1] == "Ready" for line in nodes), nodes
        assert processes_mentioning(str(cluster_dir))

        again = _harness("up", "--dir", str(cluster_dir))
        assert again.returncode == 1
        assert "already recorded" in again.stderr
    finally:
        down = _harness("down", "--dir", str(cluster_dir))
    assert down.returncode == 0, down.stderr
    assert "kube-apiserver" in down.stdout
    assert "prometheus" in down.stdout
    wait_for(lambda: not processes_mentioning(str(cluster_dir)), timeout=30, what="no process left")
    assert not cluster_dir.exists()


def test_cluster_down_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    down = _harness("down", "--dir", str(tmp_path / "nothing"))
    assert down.returncode == 0
    assert "nothing to stop" in down.stdout
