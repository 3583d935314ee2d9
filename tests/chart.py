"""Running helm on the chart in tests: values always go through a file.

A values file rather than ``--set``: values such as ``"bad tag!"`` need no
shell-style escaping, so a test states exactly the value a user would write.

The chart's runtime tests (tests/e2e/test_chart_rbac.py, test_chart_ha.py)
also share here how they stand the chart up: an audited full tier of their
own, ``helm`` against it, the ServiceAccount's own tokens, and the rights the
rendered (Cluster)Roles grant, to compare with the audit log.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from e2e.dataplane.scenario import CRD_DIR
from e2e.harness import ControlPlane, Tier, Toolchain

CHART = Path(__file__).resolve().parents[1] / "charts" / "modelcanary"
Right = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def write_values(values: dict[str, Any], directory: Path) -> Path:
    path = directory / f"values-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run_helm(helm: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=timeout
    )


@contextmanager
def audited_full_tier(
    toolchain: Toolchain, workdir: Path, *, audit: bool = True
) -> Iterator[ControlPlane]:
    """A full tier of its own with the Gateway API and our CRDs, by default with an
    audit log (a cluster-wide operator sees it all)."""
    audited = ControlPlane(toolchain, workdir, audit=audit)
    try:
        audited.start(Tier.FULL)
        audited.install_gateway_api()
        audited.install_crds(sorted(CRD_DIR.glob("*.yaml")))
        yield audited
    finally:
        audited.stop()


def helm_on(plane: ControlPlane, *args: str) -> str:
    """``helm`` against the plane as its admin; it must succeed."""
    done = run_helm(plane.toolchain.helm, "--kubeconfig", str(plane.kubeconfig), *args, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig with a new bound token of the ServiceAccount (the TokenRequest API)."""
    code, body = plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert code == 201, body
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_cert)},
            }
        ],
        "users": [{"name": account, "user": {"token": body["status"]["token"]}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": account}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def credential_id(kubeconfig: Path) -> str:
    """How the audit log names the kubeconfig's token: ``JTI=<its jti claim>``.

    Two tokens of one ServiceAccount share its user name; the API server
    records each request's token in ``user.extra`` under this id.
    """
    token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


def granted(rendered: str) -> set[Right]:
    """Every (group, resource, verb) the rendered Roles and ClusterRoles grant."""
    rights: set[Right] = set()
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        rights |= {(group, resource, verb) for verb in rule["verbs"]}
    return rights


CREDENTIAL = "authentication.kubernetes.io/credential-id"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclasses.dataclass(frozen=True)
class Call:
    """One request of a ServiceAccount in the audit log, with the token it came with
    (two tokens of one account share its user name; ``credential_id`` names each)."""

    credential: str
    verb: str
    group: str
    resource: str  # with "/subresource" if any
    code: int
    namespace: str = ""
    name: str = ""
    at: datetime.datetime | None = None


def calls(plane: ControlPlane, user: str) -> list[Call]:
    """Every request of ``user`` in ``plane``'s audit log, in the log's order."""
    found = []
    for line in plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        who = event.get("user") or {}
        if who.get("username") != user:
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", "")
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        received = event.get("requestReceivedTimestamp")
        found.append(
            Call(
                credential=((who.get("extra") or {}).get(CREDENTIAL) or [""])[0],
                verb=event.get("verb", ""),
                group=ref.get("apiGroup", ""),
                resource=resource,
                code=int((event.get("responseStatus") or {}).get("code", 0)),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                at=datetime.datetime.fromisoformat(received) if received else None,
            )
        )
    return found
