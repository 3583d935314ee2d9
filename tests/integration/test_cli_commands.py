"""The ``modelcanary`` commands against a real API server: output, and every way they fail.

Each command runs as a fresh process (tests/cli.py), so exit codes, stderr and
the absence of tracebacks are what a person or a script would see. Refusals
(exit 3) come from the real operator, run as a process watching the test's
namespace; "no answer" (exit 4) is the same request with no operator at all.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
import yaml
from kr8s.objects import new_class

from e2e.dataplane.operator import OperatorProcess
from e2e.harness import ControlPlane
from e2e.harness.binaries import Toolchain
from e2e.harness.kubernetes import wait_for
from tests.cli import REPO, RunningCommand, run_modelcanary

pytestmark = pytest.mark.integration

ModelDeployment = new_class("ModelDeployment.modelcanary.io/v1alpha1", namespaced=True)

# Every command that reads one ModelDeployment, with the arguments it needs.
COMMANDS: list[tuple[str, ...]] = [
    ("status",),
    ("history",),
    ("promote",),
    ("promote", "--full"),
    ("abort",),
    ("pause",),
    ("resume",),
    ("retry",),
    ("rollback", "--to", "abc"),
]
ACTIONS = [command for command in COMMANDS if command[0] not in ("status", "history")]

PREDICTOR: dict[str, Any] = {
    "model": {"name": "sentiment", "version": "1.0.0", "uri": "s3://models/sentiment/1.0.0"},
    "template": {"spec": {"containers": [{"name": "server", "image": "server:1"}]}},
}


def manifest(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "predictor": copy.deepcopy(PREDICTOR),
            "traffic": {"replicas": {}},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        },
    }


def with_name(command: tuple[str, ...], name: str) -> list[str]:
    """The command with the ModelDeployment's name right after the verb."""
    return [command[0], name, *command[1:]]


@pytest.fixture
def sentiment(
    control_plane: ControlPlane, modelcanary_crds: list[str], k8s: kr8s.Api, namespace: str
) -> Any:
    md = ModelDeployment(manifest("sentiment", namespace), api=k8s)
    md.create()
    return md


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[None]:
    process = OperatorProcess(control_plane.kubeconfig, namespace, tmp_path).start()
    try:
        yield
    finally:
        process.stop()


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_name_exits_1(
    control_plane: ControlPlane,
    modelcanary_crds: list[str],
    namespace: str,
    command: tuple[str, ...],
) -> None:
    done = run_modelcanary(
        *with_name(command, "nope"), "-n", namespace, kubeconfig=control_plane.kubeconfig
    )
    assert done.returncode == 1, done
    assert f"error: modeldeployment nope not found in namespace {namespace}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_kubeconfig_exits_1_without_a_traceback(command: tuple[str, ...]) -> None:
    done = run_modelcanary(*with_name(command, "sentiment"), kubeconfig=None)
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: cannot reach the cluster"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "sentiment"],  # --to is required
        ["promote"],  # no name
        ["status", "sentiment", "-o", "xml"],
        ["history", "sentiment", "-o", "table"],
        ["abort", "sentiment", "--timeout", "soon"],
        ["lint"],  # no file
        ["frobnicate", "sentiment"],
    ],
    ids=" ".join,
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    done = run_modelcanary(*argv, kubeconfig=None)
    assert done.returncode == 2, done
    assert "usage: modelcanary" in done.stderr


def test_an_action_invalid_in_the_current_phase_exits_3_with_the_operators_reason(
    control_plane: ControlPlane, sentiment: Any, namespace: str, operator: None
) -> None:
    kubeconfig = control_plane.kubeconfig
    # No canary runs: the first revision goes straight to 100%.
    abort = run_modelcanary("abort", "sentiment", "-n", namespace, kubeconfig=kubeconfig)
    assert abort.returncode == 3, abort
    assert "the operator refused 'abort': no canary is in progress" in abort.stderr

    rollback = run_modelcanary(
        "rollback", "sentiment", "--to", "nosuchrev", "-n", namespace, kubeconfig=kubeconfig
    )
    assert rollback.returncode == 3, rollback
    assert "revision nosuchrev is not in the history" in rollback.stderr

    sentiment.refresh()
    last = sentiment.raw["status"]["lastAction"]
    assert (last["action"], last["revision"], last["accepted"]) == ("rollback", "nosuchrev", False)


def test_no_operator_exits_4_after_the_timeout_and_says_why(
    control_plane: ControlPlane, sentiment: Any, namespace: str
) -> None:
    done = run_modelcanary(
        "pause", "sentiment", "-n", namespace, "--timeout", "1", kubeconfig=control_plane.kubeconfig
    )
    assert done.returncode == 4, done
    assert "no answer from the operator to 'pause' within 1s" in done.stderr
    assert "is the operator running" in done.stderr
    # The request itself was recorded, for an operator that comes back later.
    sentiment.refresh()
    annotations = sentiment.raw["metadata"]["annotations"]
    assert annotations["modelcanary.io/action"] == "pause"
    assert annotations["modelcanary.io/action-id"] in done.stderr


def test_no_wait_returns_0_once_the_request_is_recorded(
    control_plane: ControlPlane, sentiment: Any, namespace: str
) -> None:
    done = run_modelcanary(
        "rollback",
        "sentiment",
        "--to",
        "abc123",
        "--no-wait",
        "-n",
        namespace,
        kubeconfig=control_plane.kubeconfig,
    )
    assert done.returncode == 0, done
    assert "rollback abc123 requested" in done.stdout
    sentiment.refresh()
    annotations = sentiment.raw["metadata"]["annotations"]
    assert annotations["modelcanary.io/action"] == "rollback abc123"
    assert annotations["modelcanary.io/action-id"].startswith("cli-")


# --------------------------------------------------------------------------- output

HISTORY_STATUS = {
    "phase": "Healthy",
    "message": "serving 1.0.0",
    "stableRevision": "rev0000001",
    "history": [
        {
            "revision": "rev0000002",
            "predictor": {**PREDICTOR, "model": {**PREDICTOR["model"], "version": "1.1.0"}},
            "outcome": "RolledBack",
            "createdAt": "2026-11-23T10:00:00Z",
            "finishedAt": "2026-11-23T10:05:00Z",
            "reason": "error-rate 0.2 above 0.01",
        },
        {
            "revision": "rev0000001",
            "predictor": PREDICTOR,
            "outcome": "Promoted",
            "createdAt": "2026-11-23T09:00:00Z",
            "finishedAt": "2026-11-23T09:01:00Z",
        },
    ],
    "lastKnownGood": {
        "revision": "rev0000001",
        "model": PREDICTOR["model"],
        "promotedAt": "2026-11-23T09:01:00Z",
        "note": "first revision",
    },
}


@pytest.fixture
def with_history(sentiment: Any) -> Any:
    """The status an operator would have written after one rollback (no operator runs)."""
    sentiment.patch({"status": HISTORY_STATUS}, subresource="status", type="merge")
    return sentiment


def test_status_prints_plain_text_on_a_pipe_and_data_with_o(
    control_plane: ControlPlane, with_history: Any, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    plain = run_modelcanary("status", "sentiment", "-n", namespace, kubeconfig=kubeconfig)
    assert plain.returncode == 0, plain
    assert "\x1b[" not in plain.stdout
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["Name", "sentiment"]
    assert "Phase            Healthy" in plain.stdout
    assert "Stable           rev0000001 (model 1.0.0)  weight 100%" in plain.stdout

    as_json = run_modelcanary(
        "status", "sentiment", "-n", namespace, "-o", "json", kubeconfig=kubeconfig
    )
    assert as_json.returncode == 0, as_json
    data = json.loads(as_json.stdout)
    assert data["metadata"]["name"] == "sentiment"
    assert data["status"]["stableRevision"] == "rev0000001"

    as_yaml = run_modelcanary(
        "status", "sentiment", "-n", namespace, "-o", "yaml", kubeconfig=kubeconfig
    )
    assert as_yaml.returncode == 0, as_yaml
    assert yaml.safe_load(as_yaml.stdout) == data


def test_history_lists_revisions_and_marks_stable_and_last_known_good(
    control_plane: ControlPlane, with_history: Any, namespace: str
) -> None:
    kubeconfig = control_plane.kubeconfig
    table = run_modelcanary("history", "sentiment", "-n", namespace, kubeconfig=kubeconfig)
    assert table.returncode == 0, table
    assert "\x1b[" not in table.stdout
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if "rev000000" in line}
    assert rows.keys() == {"rev0000001", "rev0000002"}
    assert "stable,last-known-good" in rows["rev0000001"]
    assert "RolledBack" in rows["rev0000002"]
    assert "1.1.0" in rows["rev0000002"]
    assert "stable" not in rows["rev0000002"]

    for output, load in (("json", json.loads), ("yaml", yaml.safe_load)):
        done = run_modelcanary(
            "history", "sentiment", "-n", namespace, "-o", output, kubeconfig=kubeconfig
        )
        assert done.returncode == 0, done
        assert [e["revision"] for e in load(done.stdout)] == ["rev0000002", "rev0000001"]


def test_status_watch_prints_each_change_and_ctrl_c_exits_0(
    control_plane: ControlPlane, with_history: Any, namespace: str
) -> None:
    watch = RunningCommand(
        "status", "sentiment", "--watch", "-n", namespace, kubeconfig=control_plane.kubeconfig
    )
    try:
        first = watch.read_until("Message", timeout=20)
        assert "serving 1.0.0" in first
        with_history.patch(
            {"status": {"message": "a new message"}}, subresource="status", type="merge"
        )
        second = watch.read_until("a new message", timeout=20)
        assert "\x1b[" not in first + second
        code, stderr = watch.interrupt()
        assert code == 0, stderr
        assert "Traceback" not in stderr
    finally:
        watch.stop()


def test_kubectl_runs_the_cli_as_its_plugin(toolchain: Toolchain) -> None:
    done = subprocess.run(
        [str(toolchain.kubectl), "modelcanary", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert done.returncode == 0, done
    assert done.stdout.startswith("modelcanary ")


def test_status_watch_on_a_terminal_redraws_a_live_view_and_ctrl_c_exits_0(
    control_plane: ControlPlane, with_history: Any, namespace: str
) -> None:
    watch = RunningCommand(
        "status",
        "sentiment",
        "--watch",
        "-n",
        namespace,
        kubeconfig=control_plane.kubeconfig,
        terminal=True,
    )
    try:
        first = watch.read_until("serving 1.0.0", timeout=20)
        assert "\x1b[" in first  # styled, as rich draws on a terminal
        with_history.patch(
            {"status": {"message": "a new message"}}, subresource="status", type="merge"
        )
        watch.read_until("a new message", timeout=20)
        code, stderr = watch.interrupt()
        assert code == 0, stderr
        assert "Traceback" not in stderr
    finally:
        watch.stop()


def test_ctrl_c_while_waiting_for_the_operator_exits_130_and_keeps_the_request(
    control_plane: ControlPlane, sentiment: Any, namespace: str
) -> None:
    waiting = RunningCommand(
        "pause",
        "sentiment",
        "-n",
        namespace,
        "--timeout",
        "60",
        kubeconfig=control_plane.kubeconfig,
    )
    try:

        def requested() -> bool:
            sentiment.refresh()
            return "modelcanary.io/action" in (sentiment.raw["metadata"].get("annotations") or {})

        wait_for(requested, timeout=20, interval=0.1, what="the pause request recorded")
        code, stderr = waiting.interrupt()
        assert code == 130, stderr
        assert "error: interrupted; 'pause' (id cli-" in stderr
        assert "Traceback" not in stderr
    finally:
        waiting.stop()
