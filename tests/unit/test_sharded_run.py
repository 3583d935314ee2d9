"""``modelcanary run --shards``: the flags, and the kopf registry it runs with, which holds
no per-object handler (kopf would add and remove its finalizer from every replica)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from modelcanary import __main__ as cli_main
from modelcanary import handlers

pytestmark = pytest.mark.unit


def kopf_run(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """What ``modelcanary run`` would start kopf with."""
    import kopf  # noqa: PLC0415

    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs))
    assert cli_main.main(["run", *argv]) == 0
    return seen


def test_sharded_mode_runs_kopf_without_per_object_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = kopf_run(
        monkeypatch, "--shards", "4", "--shard-identity", "op-a", "--shard-namespace", "ops"
    )
    assert run["registry"] is handlers.SHARDED
    assert run["standalone"] is True
    memo = run["memo"]
    assert (memo["shards"], memo["shard_identity"], memo["shard_namespace"]) == (4, "op-a", "ops")
    assert memo["shard_lease_seconds"] == 15
    assert (
        kopf_run(monkeypatch, "--shards", "2", "--shard-lease-seconds", "3")["memo"][
            "shard_lease_seconds"
        ]
        == 3
    )
    registry = handlers.SHARDED
    for per_object in (registry._changing, registry._spawning, registry._watching):
        assert per_object.get_all_handlers() == []
    activities = {h.fn.__name__ for h in registry._activities.get_all_handlers()}
    # A registry of our own has no login handler unless we add one: without it kopf
    # refused to start ("Ran out of valid credentials"), found on the first run.
    assert activities == {"_login", "start_sharded", "stop_sharded"}


def test_the_default_is_unchanged_and_the_identity_defaults_to_the_pod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAME", "modelcanary-7d9f-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "modelcanary-system")
    run = kopf_run(monkeypatch)
    assert run["registry"] is None  # kopf's default registry: every handler, as before
    assert run["memo"]["shards"] is None
    sharded = kopf_run(monkeypatch, "--shards", "2")["memo"]
    assert sharded["shard_identity"] == "modelcanary-7d9f-abcde"
    assert sharded["shard_namespace"] == "modelcanary-system"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shards", "0"], "--shards must be at least 1"),
        (["--shards", "2", "--shard-lease-seconds", "0"], "--shard-lease-seconds must be at"),
        (["--shards", "2", "--peering", "p"], "--shards and --peering exclude each other"),
    ],
)
def test_refused_flags(monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        kopf_run(monkeypatch, *argv)


def test_a_drill_that_ends_wakes_its_model_deployments_sharded_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a summary to record (a drill refused or failed early), too."""
    woken: list[tuple[str, str]] = []

    class Runtime:
        def wake_model_deployment(self, namespace: str, name: str) -> None:
            woken.append((namespace, name))

        events = SimpleNamespace(post=lambda *_, **__: None)

    monkeypatch.setattr(handlers.state, "sharded", Runtime())
    drill = {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "RollbackDrill",
        "metadata": {"namespace": "ns", "name": "d", "uid": "u"},
        "spec": {"modelDeployment": "fraud"},
        "status": {"phase": "Running"},
    }
    decision = SimpleNamespace(
        events=[], summary=None, status=SimpleNamespace(phase=SimpleNamespace(value="Refused"))
    )
    result = SimpleNamespace(
        decision=decision, failed=None, finished=True, model_deployment_uid=None
    )
    handlers.drills.report_drill(drill, result)  # type: ignore[arg-type]
    assert woken == [("ns", "fraud")]
