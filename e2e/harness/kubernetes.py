"""A real Kubernetes control plane on loopback, in two tiers.

The fast tier (etcd + kube-apiserver) starts in a few seconds and is all that
CRD, admission and handler tests need. The full tier adds the controllers that
make workloads real: kube-controller-manager (Deployments, ReplicaSets,
CronJobs, Jobs, garbage collection, service-account tokens), kube-scheduler
(binding), and kwok, which plays the kubelet for a few fake Nodes so that Pods
become Ready without a container runtime. A fast tier can be raised to the
full tier in place, so one session never runs two API servers.

The API server is configured the way a real one is: TLS serving, client
certificate authentication, RBAC authorization, and a service-account issuer
with its own signing keys.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kr8s
import yaml
from kr8s.objects import APIObject

from e2e.harness import pki
from e2e.harness.binaries import Toolchain
from e2e.harness.processes import ManagedProcess, StartupError, free_port, terminate_group

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
# Stages of our own for kwok's fake kubelet, beside upstream's from the toolchain.
OUR_KWOK_STAGES = Path(__file__).parent / "kwok_stages"
_STATE_FILE = "state.json"

# client certificate file stem -> (user, group)
_CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("modelcanary-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
}


class Tier(enum.StrEnum):
    FAST = "fast"
    FULL = "full"


def _https_get(url: str, context: ssl.SSLContext, timeout: float = 2.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, context=context, timeout=timeout) as response:  # noqa: S310
        return int(response.status), response.read().decode()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2.0) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _unverified_tls() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with a
    # self-signed certificate of their own; only liveness is read from it.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    client: pki.KeyPair,
    user: str,
    *,
    context: str = "modelcanary-test",
) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


# Metadata of every request, logged once it is answered (so with its code).
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One request from the audit log; empty strings where it has no such part."""

    user: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    code: int
    uri: str


class ControlPlane:
    """etcd + kube-apiserver, optionally raised to the full tier.

    ``detached`` is for ``make cluster-up``: the processes outlive this Python
    process, and their ids go into ``state.json`` in ``workdir`` for
    :func:`stop_detached`.
    """

    def __init__(
        self,
        toolchain: Toolchain,
        workdir: Path,
        *,
        fake_nodes: int = 3,
        detached: bool = False,
        audit: bool = False,
        controller_manager_qps: tuple[float, int] | None = None,
    ) -> None:
        """``controller_manager_qps`` is kube-controller-manager's client
        (--kube-api-qps, --kube-api-burst) for every controller; its default,
        20/30, is what its ReplicaSet controller then creates pods at, which
        bounds how fast hundreds of workloads can become ready (benchmarks)."""
        self.toolchain = toolchain
        self.audit = audit
        self.controller_manager_qps = controller_manager_qps
        self.workdir = workdir
        self.fake_nodes = fake_nodes
        self.detached = detached
        self.tier: Tier | None = None
        self.processes: list[ManagedProcess] = []
        self.logs = workdir / "logs"
        self.api_port = 0
        self._etcd_ports = (0, 0)
        self._pki: pki.ClusterPKI | None = None

    # -- addresses and credentials -------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self._require_pki().ca.cert

    def _require_pki(self) -> pki.ClusterPKI:
        if self._pki is None:
            raise RuntimeError("the control plane has not been started")
        return self._pki

    def kubeconfig_for(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for any identity, signed by the cluster CA. Tests use it
        to prove what a user with given RBAC rights can and cannot do."""
        stem = "user-" + "".join(c if c.isalnum() else "-" for c in user)
        directory = self.workdir / "pki"
        pair = pki.issue_client(self._require_pki(), directory, stem, user, list(groups))
        return write_kubeconfig(
            self.workdir / f"{stem}.kubeconfig",
            self.server,
            self.ca_cert,
            pair,
            user,
        )

    def _tls(self) -> ssl.SSLContext:
        material = self._require_pki()
        context = ssl.create_default_context(cafile=str(material.ca.cert))
        admin = material.clients["admin"]
        context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    def get(self, path: str) -> tuple[int, str]:
        """An authenticated GET against the API server (as the admin)."""
        return _https_get(self.server + path, self._tls())

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A JSON request as the admin; returns (HTTP status, decoded body), errors included.

        Faster than kubectl for tests that send many objects (dry-run admission).
        """
        query = "?" + urllib.parse.urlencode(params) if params else ""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own https URL
            self.server + path + query,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._tls(), timeout=30) as response:  # noqa: S310
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read() or b"null")

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.toolchain.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            input=input_text,
            timeout=120,
        )

    # -- lifecycle -----------------------------------------------------------------

    def start(self, tier: Tier = Tier.FAST) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._pki = pki.generate(self.workdir / "pki", _CLIENTS)
            self._start_etcd()
            self._start_apiserver()
            self.tier = Tier.FAST
            if tier is Tier.FULL:
                self.ensure_tier(Tier.FULL)
        except BaseException:
            self.stop()
            raise
        self._save_state()
        return self

    def ensure_tier(self, tier: Tier) -> ControlPlane:
        if tier is Tier.FULL and self.tier is Tier.FAST:
            try:
                self._start_controller_manager()
                self._start_scheduler()
                self._start_kwok()
                self._create_fake_nodes()
            except BaseException:
                self.stop()
                raise
            self.tier = Tier.FULL
            self._save_state()
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        self.tier = None

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, self.logs / f"{name}.log", die_with_parent=not self.detached
        ).start()
        self.processes.append(process)
        return process

    def _save_state(self) -> None:
        state = {
            "tier": str(self.tier),
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
            "processes": [{"name": p.name, "pgid": p.pid} for p in self.processes],
        }
        (self.workdir / _STATE_FILE).write_text(json.dumps(state, indent=2))

    # -- components ----------------------------------------------------------------

    # -- outages: a component stopped and started again where it was ------------------

    def stop_component(self, name: str) -> None:
        """Stop ``kube-apiserver`` or ``etcd`` (the outage a control-plane upgrade or a
        crash causes); :meth:`start_component` brings it back on the same port."""
        process = next((p for p in self.processes if p.name == name), None)
        if process is None:
            raise LookupError(f"{name} is not running")
        process.stop()
        self.processes.remove(process)

    def start_component(self, name: str) -> None:
        """Start a component :meth:`stop_component` stopped, on its old port and data."""
        if any(p.name == name for p in self.processes):
            raise RuntimeError(f"{name} is running already")
        starts = {"etcd": self._start_etcd, "kube-apiserver": self._start_apiserver}
        starts[name](again=True)
        self._save_state()

    def _start_etcd(self, *, again: bool = False) -> None:
        if not again:
            self._etcd_ports = (free_port(), free_port())
        client, peer = self._etcd_ports
        self.etcd_url = f"http://127.0.0.1:{client}"
        process = self._spawn(
            "etcd",
            [
                str(self.toolchain.etcd),
                "--name=modelcanary-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=modelcanary-test=http://127.0.0.1:{peer}",
                # A test cluster's data is thrown away; fsync only costs time.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        process.wait_ready(lambda: _http_ok(self.etcd_url + "/health"), timeout=30)

    def _start_apiserver(self, *, again: bool = False) -> None:
        material = self._require_pki()
        if not again:
            self.api_port = free_port()
        process = self._spawn(
            "kube-apiserver",
            [
                str(self.toolchain.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={material.serving.cert}",
                f"--tls-private-key-file={material.serving.key}",
                f"--client-ca-file={material.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={material.service_account_public_key}",
                f"--service-account-signing-key-file={material.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # The `kubernetes` Service cannot point at a loopback address.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
                *self._audit_flags(),
            ],
        )
        tls = self._tls()
        process.wait_ready(lambda: _https_get(self.server + "/readyz", tls)[0] == 200, timeout=90)
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            material.ca.cert,
            material.clients["admin"],
            "modelcanary-admin",
        )

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _audit_flags(self) -> list[str]:
        """With ``audit=True``: every request's metadata, one JSON line each."""
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(json.dumps(_AUDIT_POLICY))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-mode=blocking",
            "--audit-log-maxsize=0",
        ]

    def audit_records(self, user: str | None = None) -> list[AuditRecord]:
        """The audit log's requests (only ``user``'s if given), oldest first."""
        if not self.audit:
            raise RuntimeError("this control plane was started without audit=True")
        found: list[AuditRecord] = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            name = event.get("user", {}).get("username", "")
            if user is not None and name != user:
                continue
            ref = event.get("objectRef") or {}
            found.append(
                AuditRecord(
                    user=name,
                    verb=event.get("verb", ""),
                    group=ref.get("apiGroup", ""),
                    resource=ref.get("resource", ""),
                    subresource=ref.get("subresource", ""),
                    namespace=ref.get("namespace", ""),
                    code=int((event.get("responseStatus") or {}).get("code", 0)),
                    uri=event.get("requestURI", ""),
                )
            )
        return found

    def _component_kubeconfig(self, stem: str) -> Path:
        material = self._require_pki()
        pair = material.clients[stem]
        return write_kubeconfig(
            self.workdir / f"{stem}.kubeconfig",
            self.server,
            material.ca.cert,
            pair,
            _CLIENTS[stem][0],
        )

    def _start_controller_manager(self) -> None:
        material = self._require_pki()
        self._start_secure_component(
            "kube-controller-manager",
            self.toolchain.kube_controller_manager,
            "controller-manager",
            [
                # Every default controller runs (--controllers=*), including the
                # horizontal-pod-autoscaler one that tests/e2e/test_autoscaling_e2e.py
                # relies on: it enforces minReplicas even with no metrics source.
                # Each controller acts under its own service account, as in
                # kubeadm clusters, so RBAC problems show up here too.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={material.service_account_key}",
                f"--root-ca-file={material.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # KEP-5647 (beta, on by default in 1.36): the ReplicaSet controller
                # waits until its informer has seen its own writes. After the chaos
                # run restarts kube-apiserver, this quiet cluster may send that
                # informer nothing newer for minutes, and the ReplicaSet is not
                # synced meanwhile: a CI run saw "read version: 3175 is not as new
                # as written version: 3194 for group resource pods" and a candidate
                # whose pods came 3 min late, so its canary could not start in the
                # 300 s the chaos test gives it. That stall is the controller
                # manager's, not what the tests measure.
                "--feature-gates=StaleControllerConsistencyReplicaSet=false",
                *self._controller_manager_client_flags(),
            ],
        )

    def _controller_manager_client_flags(self) -> list[str]:
        if self.controller_manager_qps is None:
            return []
        qps, burst = self.controller_manager_qps
        return [f"--kube-api-qps={qps:g}", f"--kube-api-burst={burst}"]

    def _start_scheduler(self) -> None:
        self._start_secure_component(
            "kube-scheduler", self.toolchain.kube_scheduler, "scheduler", []
        )

    def _start_secure_component(
        self, name: str, binary: Path, identity: str, extra_args: list[str]
    ) -> None:
        """kube-controller-manager and kube-scheduler share their serving and client flags."""
        kubeconfig = self._component_kubeconfig(identity)
        port = free_port()
        process = self._spawn(
            name,
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / (identity + '-certs')}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
                *extra_args,
            ],
        )
        insecure = _unverified_tls()
        process.wait_ready(
            lambda: _http_ok(f"https://127.0.0.1:{port}/healthz", insecure), timeout=60
        )

    def _start_kwok(self) -> None:
        # kwok reads its Stage objects from one multi-document config file:
        # upstream's, then ours (what a kubelet does that upstream's leave out).
        stages = [
            *sorted(self.toolchain.kwok_stages.glob("*.yaml")),
            *sorted(OUR_KWOK_STAGES.glob("*.yaml")),
        ]
        config = self.workdir / "kwok.yaml"
        config.write_text("\n---\n".join(path.read_text() for path in stages))
        port = free_port()
        process = self._spawn(
            "kwok",
            [
                str(self.toolchain.kwok),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{port}",
            ],
        )
        process.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60)

    def _create_fake_nodes(self) -> None:
        nodes = [self._fake_node(f"kwok-node-{index}") for index in range(self.fake_nodes)]
        manifest = yaml.safe_dump_all(nodes)
        self.kubectl("apply", "-f", "-", input_text=manifest)
        result = self.kubectl(
            "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s", check=False
        )
        if result.returncode != 0:
            kwok = next(p for p in self.processes if p.name == "kwok")
            raise StartupError(
                f"kwok nodes did not become Ready: {result.stderr}\n"
                f"----- kwok log: {kwok.log_path} -----\n" + kwok.log_path.read_text()[-4000:]
            )

    @staticmethod
    def _fake_node(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
        }

    # -- add-ons -------------------------------------------------------------------

    def install_crds(self, paths: Sequence[Path]) -> list[str]:
        """Apply CRD files server-side and wait until each serves; returns their names."""
        args = ["apply", "--server-side", "--force-conflicts"]
        for path in paths:
            args += ["-f", str(path)]
        self.kubectl(*args)
        names = [
            str(document["metadata"]["name"])
            for path in paths
            for document in yaml.safe_load_all(path.read_text())
            if document
        ]
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]
        )
        # Established is not enough after an update: the API server then
        # re-initialises the resource's storage and answers 429 for a moment.
        for name in names:
            wait_for(
                lambda name=name: self.kubectl("get", name, "-A", check=False).returncode == 0,
                timeout=30,
                interval=0.1,
                what=f"{name} to serve",
            )
        return names

    def install_gateway_api(self) -> None:
        """Install the Gateway API standard-channel CRDs and wait until they serve."""
        self.install_crds(sorted(self.toolchain.gateway_api_crds.glob("*.yaml")))


def stop_detached(workdir: Path, *, remove: bool = True) -> list[str]:
    """Stop a cluster started with ``detached=True``; returns the names stopped."""
    state_file = workdir / _STATE_FILE
    stopped: list[str] = []
    if state_file.exists():
        state = json.loads(state_file.read_text())
        for entry in reversed(state.get("processes", [])):
            terminate_group(int(entry["pgid"]), grace=10.0)
            stopped.append(str(entry["name"]))
    if remove and workdir.exists():
        shutil.rmtree(workdir, ignore_errors=True)
    return stopped


def wait_for(
    predicate: Any, *, timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def processes_mentioning(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``marker`` (e.g. a run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "State:\tZ" in status:
            continue
        if marker in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def list_objects(
    api: kr8s.Api,
    kind: str | type,
    *,
    namespace: str | None = None,
    label_selector: str | dict[str, str] | None = None,
) -> list[APIObject]:
    """``api.get`` as a typed list of objects."""
    objects: list[APIObject] = []
    for found in api.get(kind, namespace=namespace, label_selector=label_selector):
        # kr8s's sync classes derive from its private async base, not from
        # kr8s.objects.APIObject, so only "not a raw dict" can be checked.
        assert not isinstance(found, dict), found
        objects.append(found)
    return objects
