"""No process started by the harness outlives its test session.

Each case runs a pytest of its own that starts the full tier and Prometheus in
a temp dir, then ends badly: a failing test, Ctrl-C, SIGTERM, or SIGKILL (where
no Python code runs at all and only the kernel's parent-death signal helps).
Afterwards no live process may mention that temp dir on its command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness.kubernetes import processes_mentioning, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
)
CASES = Path(__file__).parent / "harness_cases" / "inner_run.py"


def _inner_pytest(basetemp: Path, case: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            str(CASES),
            "-k",
            case,
            f"--basetemp={basetemp}",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell starts background jobs with SIGINT ignored, and the child
        # would inherit that; Ctrl-C must reach the inner pytest as it would
        # from a terminal.
        preexec_fn=_default_sigint,  # noqa: PLW1509
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _assert_nothing_left(basetemp: Path) -> None:
    try:
        wait_for(
            lambda: not processes_mentioning(str(basetemp)),
            timeout=30,
            what="the inner run's processes to exit",
        )
    except TimeoutError:
        pytest.fail(f"left behind: {processes_mentioning(str(basetemp))}")


def test_failing_test_leaves_no_process_behind(tmp_path: Path) -> None:
    basetemp = tmp_path / "inner"
    inner = _inner_pytest(basetemp, "fails_on_purpose", {})
    output, _ = inner.communicate(timeout=240)
    assert inner.returncode == 1, output
    assert "this test fails on purpose" in output
    # The run really started components in this dir (their logs are there).
    assert list(basetemp.rglob("kube-apiserver.log"))
    assert list(basetemp.rglob("prometheus.log"))
    _assert_nothing_left(basetemp)


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_interrupted_run_leaves_no_process_behind(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    basetemp = tmp_path / "inner"
    ready = tmp_path / "ready"
    inner = _inner_pytest(basetemp, "waits_to_be_killed", {"MODELCANARY_INNER_READY": str(ready)})
    try:
        wait_for(
            lambda: ready.exists() or inner.poll() is not None, timeout=180, what="the inner run"
        )
        assert inner.poll() is None, inner.communicate()[0]
        running = processes_mentioning(str(basetemp))
        binaries = {Path(cmdline.split()[0]).name for _, cmdline in running}
        assert set(COMPONENTS) <= binaries
        inner.send_signal(stop_signal)
        inner.communicate(timeout=120)
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.communicate()
    assert inner.returncode != 0
    _assert_nothing_left(basetemp)
