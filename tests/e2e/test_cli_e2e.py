"""Every manual action through the ``modelcanary`` CLI, accepted by the real operator.

One world (operator, nginx, model servers under load, Prometheus) and one
story, so the full tier is paid for once: a canary paused, resumed and
promoted one step at a time; the next one aborted, retried and promoted with
``--full``; then ``rollback --to`` the first revision, and ``history`` listing
all of it. Each command runs as a fresh process and must exit 0 with the
operator's own words; the status is then checked for what the action did.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from e2e.dataplane.scenario import CanaryScenario
from tests.cli import run_modelcanary

pytestmark = pytest.mark.e2e

FIRST, SECOND, THIRD = "1.0.0", "1.1.0", "1.2.0"
# Pauses without a duration wait for a person, so each action lands in a known step.
HELD_STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 100},
]


def cli(world: CanaryScenario, *args: str) -> subprocess.CompletedProcess[str]:
    return run_modelcanary(*args, "-n", world.namespace, kubeconfig=world.plane.kubeconfig)


def accepted(world: CanaryScenario, *args: str, says: str) -> dict[str, Any]:
    """Run an action; it must be accepted with ``says`` in the operator's answer."""
    done = cli(world, *args)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    assert " accepted: " in done.stdout
    assert says in done.stdout, done.stdout
    status = world.status()
    assert status["lastAction"]["accepted"] is True
    return status


def held_at(world: CanaryScenario, step: int, version: str) -> dict[str, Any]:
    return world.wait_for_status(
        lambda s: (
            s.get("canaryRevision") is not None
            and s.get("currentStep") == step
            and s.get("canaryWeight") == HELD_STEPS[step - 1]["setWeight"]
        ),
        timeout=60,
        what=f"{version} held at step {step}",
    )


def serving(world: CanaryScenario, revision: str | None = None) -> dict[str, Any]:
    return world.wait_for_status(
        lambda s: (
            s.get("phase") == "Healthy"
            and s.get("canaryRevision") is None
            and not s.get("restoring")
            and s.get("stableRevision") is not None
            and (revision is None or s.get("stableRevision") == revision)
        ),
        timeout=90,
        what=f"{revision or 'a revision'} serving",
    )


def test_every_action_through_the_cli(scenario: CanaryScenario) -> None:
    scenario.apply(scenario.manifest(FIRST))
    first = serving(scenario)["stableRevision"]

    # A canary paused, resumed past its first held pause, then promoted past the second.
    scenario.apply(scenario.manifest(SECOND, steps=HELD_STEPS, bake="2s"))
    second = held_at(scenario, 1, SECOND)["canaryRevision"]
    status = accepted(scenario, "pause", "fraud-detector", says="paused")
    assert status["paused"] is True
    assert status["phase"] == "Paused"

    shown = cli(scenario, "status", "fraud-detector")
    assert shown.returncode == 0, shown.stderr
    assert f"{second} (model {SECOND})  weight 10%" in shown.stdout
    assert "2/5 pause until resumed  (paused)" in shown.stdout
    assert "ActionAccepted" in shown.stdout  # the object's Events are shown
    assert "\x1b[" not in shown.stdout

    status = accepted(scenario, "resume", "fraud-detector", says="resumed")
    assert status["paused"] is False
    held_at(scenario, 3, SECOND)
    accepted(scenario, "promote", "fraud-detector", says="skipped the pause at step 3")
    assert serving(scenario, second)["lastKnownGood"]["model"]["version"] == SECOND

    # The next canary aborted, retried, then promoted at once with --full.
    scenario.apply(scenario.manifest(THIRD, steps=HELD_STEPS, bake="2s"))
    third = held_at(scenario, 1, THIRD)["canaryRevision"]
    accepted(scenario, "abort", "fraud-detector", says=f"aborted {third}")
    status = scenario.wait_for_status(
        lambda s: s.get("canaryRevision") is None, timeout=30, what="the abort carried out"
    )
    assert status["stableRevision"] == second
    accepted(scenario, "retry", "fraud-detector", says=f"retrying {third}")
    held_at(scenario, 1, THIRD)
    accepted(scenario, "promote", "fraud-detector", "--full", says="going to 100%")
    assert serving(scenario, third)["lastKnownGood"]["revision"] == third

    # Back to the first revision, from the history.
    accepted(scenario, "rollback", "fraud-detector", "--to", first, says=f"restoring {first}")
    status = scenario.wait_for_status(
        lambda s: s.get("stableRevision") == first and not s.get("restoring"),
        timeout=60,
        what="the first revision restored",
    )
    # The spec still asks for the third revision, which is now marked rolled back.
    assert status["phase"] == "RolledBack"
    assert scenario.route_sync is not None
    scenario.route_sync.wait_until_applied({scenario.revision_service(first): 100}, timeout=30)

    listed = cli(scenario, "history", "fraud-detector", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    entries = {entry["revision"]: entry for entry in json.loads(listed.stdout)}
    outcomes = {revision: entry["outcome"] for revision, entry in entries.items()}
    # One entry per revision: the retry reused the aborted third revision's entry.
    assert outcomes == {first: "Promoted", second: "Promoted", third: "RolledBack"}
    assert f"rolled back by hand to {first}" in entries[third]["reason"]
    table = cli(scenario, "history", "fraud-detector")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "stable,last-known-good" in rows[first].split()
    assert THIRD in rows[third].split()
    assert "stable" not in rows[third]
