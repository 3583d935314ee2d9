"""Rollback drills end to end on the full tier: the operator as a process, real
nginx following the HTTPRoute, real model servers under load, real Prometheus.

Each test first makes a model with two promoted revisions, so that the drill
has a rollback target other than what is serving: the revision a rollback
would return to if the current one went bad.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
import yaml
from kr8s.objects import CronJob, Deployment, Event, new_class

from e2e.dataplane.jobs import JobPodRunner, trigger_cronjob
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness.kubernetes import wait_for

pytestmark = pytest.mark.e2e

GOOD = "1.0.0"
BETTER = "1.1.0"
RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)
HTTPRoute = new_class("HTTPRoute.gateway.networking.k8s.io/v1", namespaced=True)
Policy = new_class("ValidatingAdmissionPolicy.admissionregistration.k8s.io/v1", namespaced=False)
PolicyBinding = new_class(
    "ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io/v1", namespaced=False
)


@pytest.fixture
def world(scenario: CanaryScenario) -> CanaryScenario:
    return scenario


def two_promoted(world: CanaryScenario, **overrides: Any) -> tuple[str, str]:
    return world.two_promoted(GOOD, BETTER, **overrides)


def create_drill(world: CanaryScenario, mode: str, **spec: Any) -> str:
    drill = RollbackDrill(
        {
            "metadata": {"generateName": f"{world.name}-drill-", "namespace": world.namespace},
            "spec": {"modelDeployment": world.name, "mode": mode, **spec},
        },
        api=world.api,
    )
    drill.create()
    return str(drill.name)


def drill_status(world: CanaryScenario, name: str) -> dict[str, Any]:
    found = RollbackDrill.get(name, namespace=world.namespace, api=world.api)
    return dict(found.raw.get("status") or {})


def wait_for_drill(
    world: CanaryScenario,
    name: str,
    predicate: Callable[[dict[str, Any]], bool] | None = None,
    *,
    timeout: float = 90,
) -> dict[str, Any]:
    ended = predicate or (lambda s: s.get("phase") in ("Succeeded", "Failed", "Refused"))
    last: dict[str, Any] = {}

    def check() -> bool:
        nonlocal last
        last = drill_status(world, name)
        return ended(last)

    try:
        wait_for(check, timeout=timeout, interval=0.25, what=f"drill {name}")
    except TimeoutError as error:
        raise TimeoutError(
            f"{error}; last drill status: {last}\n"
            f"operator log tail:\n{world.operator.log_text()[-3000:]}"
        ) from None
    return last


def route_weights(world: CanaryScenario) -> list[tuple[str, int]]:
    route = HTTPRoute.get(world.name, namespace=world.namespace, api=world.api)
    refs = route.raw["spec"]["rules"][0]["backendRefs"]
    return [(ref["name"], ref.get("weight", 1)) for ref in refs]


def events_of(world: CanaryScenario, name: str) -> list[str]:
    events = [
        e.raw if isinstance(e, Event) else e
        for e in Event.list(namespace=world.namespace, api=world.api)
    ]
    return [e["reason"] for e in events if e["involvedObject"]["name"] == name]


def rollback_ready(world: CanaryScenario) -> dict[str, Any]:
    conditions = world.status().get("conditions") or []
    return next(c for c in conditions if c["type"] == "RollbackReady")


def metric(world: CanaryScenario, pattern: str) -> float:
    found = re.search(pattern + r" ([0-9.e+]+)", world.operator.metrics())
    assert found, f"{pattern} not in the operator's metrics"
    return float(found.group(1))


def test_verify_passes_tears_down_and_is_recorded_everywhere(world: CanaryScenario) -> None:
    target, stable = two_promoted(world)
    before = route_weights(world)
    name = create_drill(world, "verify")
    status = wait_for_drill(world, name)
    assert status["phase"] == "Succeeded", status
    assert status["revisions"] == {"lastKnownGood": target, "stable": stable}
    assert 0 < status["timeToReadySeconds"] < 30
    assert status["startedAt"] <= status["finishedAt"]
    assert route_weights(world) == before
    assert world.servers is not None
    wait_for(lambda: world.servers.running() == {stable}, timeout=30, what="target torn down")
    md = world.wait_for_status(
        lambda s: (s.get("lastDrill") or {}).get("name") == name, timeout=30, what="lastDrill"
    )
    assert md["lastDrill"]["succeeded"] is True
    assert md["lastDrill"]["revision"] == target
    assert rollback_ready(world)["status"] == "True"
    try:
        wait_for(
            lambda: {"DrillStarted", "DrillSucceeded"} <= set(events_of(world, name)),
            timeout=15,
            what="the drill's events",
        )
    except TimeoutError:
        all_events = Event.list(namespace=world.namespace, api=world.api)
        raise AssertionError([e.raw for e in all_events if isinstance(e, Event)]) from None
    assert "DrillSucceeded" in events_of(world, world.name)
    # Finished, it needs no daemon, so kopf's finalizer goes: deleting the
    # drill (or its namespace) never waits for the operator.
    wait_for(
        lambda: (
            not RollbackDrill.get(name, namespace=world.namespace, api=world.api)
            .raw["metadata"]
            .get("finalizers")
        ),
        timeout=30,
        what="the finished drill's finalizer to go",
    )
    assert (
        metric(world, r'modelcanary_drill_duration_seconds_count\{[^}]*mode="verify"[^}]*\}') == 1
    )
    assert metric(world, r"modelcanary_drill_last_success_timestamp\{[^}]*\}") > 0


@pytest.fixture
def withdrawn(world: CanaryScenario) -> Iterator[Callable[[str], None]]:
    """Withdraw a model URI: pods that would load it are refused at admission.

    A ValidatingAdmissionPolicy plays the model store that lost the artifact:
    the revision's Deployment then reports ReplicaFailure with this message,
    and its pods never exist, so they never become Ready.
    """
    name = f"withdrawn-{world.namespace}"
    manifests: list[dict[str, Any]] = []

    def withdraw(uri: str) -> None:
        rule = (
            "!object.spec.containers.exists(c, has(c.env) && c.env.exists(e, "
            f"e.name == 'MODEL_URI' && has(e.value) && e.value == '{uri}'))"
        )
        manifests.extend(
            [
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingAdmissionPolicy",
                    "metadata": {"name": name},
                    "spec": {
                        "failurePolicy": "Fail",
                        "matchConstraints": {
                            "resourceRules": [
                                {
                                    "apiGroups": [""],
                                    "apiVersions": ["v1"],
                                    "operations": ["CREATE"],
                                    "resources": ["pods"],
                                }
                            ]
                        },
                        "validations": [
                            {
                                "expression": rule,
                                "message": f"model {uri} has been withdrawn from the model store",
                            }
                        ],
                    },
                },
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingAdmissionPolicyBinding",
                    "metadata": {"name": name},
                    "spec": {
                        "policyName": name,
                        "validationActions": ["Deny"],
                        "matchResources": {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": world.namespace}
                            }
                        },
                    },
                },
            ]
        )
        world.plane.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(manifests))
        probe = ["run", "probe", "-n", world.namespace, "--image=model-server:e2e"]
        probe += [f"--env=MODEL_URI={uri}", "--dry-run=server"]
        wait_for(
            lambda: world.plane.kubectl(*probe, check=False).returncode != 0,
            timeout=30,
            what="the admission policy to take effect",
        )

    yield withdraw
    if manifests:
        world.plane.kubectl(
            "delete", "--ignore-not-found", "-f", "-", input_text=yaml.safe_dump_all(manifests)
        )


def test_verify_fails_clearly_when_the_known_good_model_was_withdrawn(
    world: CanaryScenario, withdrawn: Callable[[str], None]
) -> None:
    target, stable = two_promoted(world)
    before = route_weights(world)
    withdrawn(f"s3://models/fraud/{GOOD}")
    name = create_drill(world, "verify", timeout="25s")
    status = wait_for_drill(world, name)
    assert status["phase"] == "Failed", status
    reason = status["reason"]
    assert f"revision {target} did not become Ready within 25s" in reason
    assert "withdrawn from the model store" in reason, reason
    assert route_weights(world) == before
    md = world.wait_for_status(
        lambda s: (s.get("lastDrill") or {}).get("name") == name, timeout=30, what="lastDrill"
    )
    assert md["lastDrill"]["succeeded"] is False
    ready = rollback_ready(world)
    assert (ready["status"], ready["reason"]) == ("False", "DrillFailed")
    assert "withdrawn" in ready["message"]
    assert metric(world, r"modelcanary_drill_failures_total\{[^}]*\}") == 1
    deployment = Deployment.get(f"{world.name}-{target}", namespace=world.namespace, api=world.api)
    assert deployment.raw["spec"]["replicas"] == 0  # it was not running before the drill
    assert md["stableRevision"] == stable


def test_warm_takes_a_slice_and_leaves_the_weights_exactly_as_found(
    world: CanaryScenario,
) -> None:
    target, stable = two_promoted(world)
    before = route_weights(world)
    assert world.route_sync is not None
    seen_before = len(world.route_sync.history())
    name = create_drill(world, "warm", warmWeight=20)
    status = wait_for_drill(world, name)
    assert status["phase"] == "Succeeded", status
    assert route_weights(world) == before
    target_service, stable_service = world.revision_service(target), world.revision_service(stable)
    # The drill ends when the route says 100% stable again; the dataplane's sync
    # applies that route after it (a loaded CI run read its history in between).
    world.route_sync.wait_until_applied({stable_service: 100}, timeout=30)
    applied = [e.weights for e in world.route_sync.history()[seen_before:]]
    assert {target_service: 20, stable_service: 80} in applied, applied
    assert applied[-1] == {stable_service: 100}
    assert status["timeToHealthySeconds"] > 0
    assert {r["metric"] for r in status["results"]} >= {
        "errors",
        "latency",
        "scores",
        "error-ceiling",
    }
    assert all(r["verdict"] == "Pass" for r in status["results"])


def test_live_switches_all_traffic_and_back_and_times_it(world: CanaryScenario) -> None:
    target, _ = two_promoted(world)
    before = route_weights(world)
    name = create_drill(world, "live")
    status = wait_for_drill(world, name)
    assert status["phase"] == "Succeeded", status
    assert 0 <= status["timeToRestoreSeconds"] < 10
    assert status["timeToSwitchBackSeconds"] < 10
    assert status["timeToHealthySeconds"] >= status["timeToRestoreSeconds"]
    assert route_weights(world) == before
    assert world.route_sync is not None
    applied = [e.weights for e in world.route_sync.history()]
    assert {world.revision_service(target): 100} in applied
    md = world.wait_for_status(
        lambda s: (s.get("lastDrill") or {}).get("name") == name, timeout=30, what="lastDrill"
    )
    assert md["lastDrill"]["timeToRestoreSeconds"] == status["timeToRestoreSeconds"]


def test_a_drill_during_a_canary_is_refused_and_touches_nothing(world: CanaryScenario) -> None:
    _, stable = two_promoted(world)
    world.apply(
        world.manifest("1.2.0", steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}])
    )
    canary = world.wait_for_status(
        lambda s: s.get("canaryRevision") is not None and s.get("canaryWeight") == 10,
        timeout=60,
        what="a canary at 10%",
    )["canaryRevision"]
    before = route_weights(world)
    name = create_drill(world, "live")
    status = wait_for_drill(world, name)
    assert status["phase"] == "Refused"
    assert status["reason"] == f"a canary of {canary} is in progress"
    assert route_weights(world) == before
    wait_for(lambda: "DrillRefused" in events_of(world, name), timeout=15, what="DrillRefused")
    # A refused drill rehearsed nothing: readiness is not judged on it.
    assert (world.status().get("lastDrill") or {}).get("name") != name
    assert world.status()["stableRevision"] == stable


def test_operator_killed_mid_live_drill_puts_traffic_back_after_restart(
    world: CanaryScenario,
) -> None:
    target, stable = two_promoted(world)
    before = route_weights(world)
    name = create_drill(world, "live", timeout="2m")
    wait_for_drill(world, name, lambda s: s.get("step") == "Judging", timeout=60)
    world.operator.kill()
    # Traffic is on the rehearsed revision and nobody is steering it.
    assert route_weights(world) == [(world.revision_service(target), 100)]
    world.operator.start()
    status = wait_for_drill(world, name)
    assert status["phase"] in ("Succeeded", "Failed"), status
    assert route_weights(world) == before
    assert world.route_sync is not None
    world.route_sync.wait_until_applied({world.revision_service(stable): 100}, timeout=30)


def test_a_live_drill_deleted_midway_leaves_traffic_where_it_was(world: CanaryScenario) -> None:
    """Deleting a drill is how a person stops one: it must not strand the traffic."""
    target, stable = two_promoted(world)
    before = route_weights(world)
    name = create_drill(world, "live", timeout="2m")
    wait_for_drill(world, name, lambda s: s.get("step") == "Judging", timeout=60)
    assert route_weights(world) == [(world.revision_service(target), 100)]
    RollbackDrill.get(name, namespace=world.namespace, api=world.api).delete()
    wait_for(
        lambda: not list(RollbackDrill.list(namespace=world.namespace, api=world.api)),
        timeout=30,
        what="the deleted drill to go",
    )
    wait_for(lambda: route_weights(world) == before, timeout=30, what="the weights found")
    assert world.route_sync is not None
    world.route_sync.wait_until_applied({world.revision_service(stable): 100}, timeout=30)
    status = world.wait_for_status(
        lambda s: s.get("phase") == "Healthy" and "drill" not in s.get("message", ""),
        timeout=30,
        what="the steady state without the drill",
    )
    assert status["stableRevision"] == stable
    wait_for(
        lambda: "WeightDrift" in events_of(world, world.name),
        timeout=15,
        what="the ModelDeployment saying it put the weights back",
    )
    # The rehearsed revision no longer runs: it was only up for the drill.
    assert world.servers is not None
    servers = world.servers
    wait_for(lambda: servers.running() == {stable}, timeout=30, what="the drill's target down")


def test_a_scheduled_drill_runs_through_the_real_cronjob_and_old_drills_are_pruned(
    world: CanaryScenario, tmp_path: Path
) -> None:
    # Once a year, so the CronJob controller never starts a run of its own mid-test.
    schedule = {"schedule": "17 3 1 1 *", "mode": "verify", "historyLimit": 1}
    target, _ = two_promoted(world, drill=schedule)
    cronjob_name = f"{world.name}-drill"
    cronjob = wait_for(
        lambda: _cronjob(world, cronjob_name), timeout=30, what="the operator's CronJob"
    )
    owner = cronjob["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", world.name)
    assert cronjob["spec"]["schedule"] == schedule["schedule"]
    with JobPodRunner(world.plane, world.namespace, workdir=tmp_path / "jobs") as runner:
        names: list[str] = []
        for count in (1, 2):
            trigger_cronjob(world.api, world.namespace, cronjob_name)
            run = runner.wait_for_runs(count, timeout=60)[-1]
            assert run.succeeded, run.output
            name = wait_for(
                lambda: _newest_scheduled_drill(world, exclude=names), timeout=30, what="a drill"
            )
            names.append(name)
            status = wait_for_drill(world, name)
            assert status["phase"] == "Succeeded", status
            assert status["revisions"]["lastKnownGood"] == target
    md = world.wait_for_status(
        lambda s: [d["name"] for d in s.get("drillHistory") or []] == names[::-1],
        timeout=30,
        what="both drills in the history",
    )
    assert md["lastDrill"]["name"] == names[1]
    # historyLimit 1: the older object goes, its result stays in the history.
    wait_for(lambda: _drill_names(world) == {names[1]}, timeout=30, what="the older drill pruned")
    world.apply(
        world.manifest(BETTER, steps=[{"setWeight": 50}, {"setWeight": 100}], bake="2s", drill=None)
    )
    wait_for(lambda: _cronjob(world, cronjob_name) is None, timeout=30, what="the CronJob removed")


def _cronjob(world: CanaryScenario, name: str) -> dict[str, Any] | None:
    try:
        return dict(CronJob.get(name, namespace=world.namespace, api=world.api).raw)
    except kr8s.NotFoundError:
        return None


def _drill_names(world: CanaryScenario) -> set[str]:
    drills = RollbackDrill.list(namespace=world.namespace, api=world.api)
    return {d.name for d in drills if isinstance(d, RollbackDrill)}


def _newest_scheduled_drill(world: CanaryScenario, *, exclude: list[str]) -> str | None:
    drills = RollbackDrill.list(namespace=world.namespace, api=world.api)
    for drill in drills:
        assert isinstance(drill, RollbackDrill)
        labels = drill.raw["metadata"].get("labels") or {}
        if labels.get("modelcanary.io/drill-source") == "schedule" and drill.name not in exclude:
            return str(drill.name)
    return None
