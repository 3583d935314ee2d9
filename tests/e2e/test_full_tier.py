"""The full tier runs workloads for real: controllers reconcile, the scheduler
binds, and kwok's fake kubelets make Pods Ready, so a Deployment becomes
Available exactly as it would on a real cluster."""

from __future__ import annotations

import kr8s
import pytest
from kr8s.objects import Deployment, Pod

from e2e.harness import ControlPlane
from e2e.harness.kubernetes import list_objects, wait_for

pytestmark = pytest.mark.e2e


def _deployment(
    k8s: kr8s.Api, namespace: str, name: str, labels: dict[str, str], *, replicas: int
) -> Deployment:
    """Create a Deployment whose image no kwok node ever pulls: kwok fakes the kubelet."""
    deployment = Deployment(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "server", "image": "example.invalid/m:1"}]},
                },
            },
        },
        api=k8s,
    )
    deployment.create()
    return deployment


def test_fake_nodes_are_ready(full_control_plane: ControlPlane, k8s: kr8s.Api) -> None:
    nodes = list_objects(k8s, "nodes", label_selector="type=kwok")
    assert len(nodes) == full_control_plane.fake_nodes
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node.raw["status"]["conditions"]}["Ready"]
        assert ready == "True", node.name


def test_deployment_created_through_kr8s_becomes_available(
    full_control_plane: ControlPlane, k8s: kr8s.Api, namespace: str
) -> None:
    labels = {"app": "smoke"}
    deployment = _deployment(k8s, namespace, "smoke", labels, replicas=3)

    def available() -> bool:
        deployment.refresh()
        conditions = {c["type"]: c for c in deployment.raw.get("status", {}).get("conditions", [])}
        condition = conditions.get("Available", {})
        return bool(
            condition.get("status") == "True"
            and deployment.raw["status"].get("availableReplicas") == 3
        )

    wait_for(available, timeout=90, what="the Deployment to become Available")
    pods = list_objects(k8s, Pod, namespace=namespace, label_selector=labels)
    assert len(pods) == 3
    assert {pod.raw["spec"]["nodeName"] for pod in pods} <= {
        f"kwok-node-{i}" for i in range(full_control_plane.fake_nodes)
    }
    assert all(pod.raw["status"]["phase"] == "Running" for pod in pods)


def test_scaling_to_zero_removes_the_pods(
    full_control_plane: ControlPlane, k8s: kr8s.Api, namespace: str
) -> None:
    labels = {"app": "scaled"}
    deployment = _deployment(k8s, namespace, "scaled", labels, replicas=1)

    def one_ready_replica() -> bool:
        deployment.refresh()
        return bool(deployment.raw.get("status", {}).get("readyReplicas") == 1)

    wait_for(one_ready_replica, timeout=90, what="one ready replica")
    deployment.scale(0)
    wait_for(
        lambda: not list_objects(k8s, Pod, namespace=namespace, label_selector=labels),
        timeout=90,
        what="the pods to be deleted",
    )


def test_a_pod_the_node_controller_marked_not_ready_is_ready_again(
    full_control_plane: ControlPlane, k8s: kr8s.Api, namespace: str
) -> None:
    """A node that missed its lease (kube-apiserver down past the grace period) has its
    pods marked Ready=False by kube-controller-manager; a kubelet reports them Ready
    again, and so must kwok, or their Deployment is never Available again."""
    labels = {"app": "recovers"}
    deployment = _deployment(k8s, namespace, "recovers", labels, replicas=1)

    def ready_replicas() -> int:
        deployment.refresh()
        return int(deployment.raw.get("status", {}).get("readyReplicas") or 0)

    wait_for(lambda: ready_replicas() == 1, timeout=90, what="one ready replica")
    (pod,) = list_objects(k8s, Pod, namespace=namespace, label_selector=labels)
    # What the node lifecycle controller's MarkPodsNotReady writes: Ready alone, False.
    ready_at = [c["type"] for c in pod.raw["status"]["conditions"]].index("Ready")
    not_ready = {"op": "replace", "path": f"/status/conditions/{ready_at}/status", "value": "False"}
    pod.patch([not_ready], subresource="status", type="json")

    def conditions(*, read: bool = True) -> dict[str, str]:
        if read:
            pod.refresh()
        return {c["type"]: c["status"] for c in pod.raw["status"]["conditions"]}

    assert conditions(read=False)["Ready"] == "False"  # as the patch wrote it

    wait_for(lambda: conditions()["Ready"] == "True", timeout=30, what="the pod to be Ready again")
    wait_for(lambda: ready_replicas() == 1, timeout=30, what="the replica to count as ready")
    after = conditions()
    assert after["ContainersReady"] == "True"
    assert after["PodScheduled"] == "True"
