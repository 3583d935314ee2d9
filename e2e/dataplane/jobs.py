"""A stand-in kubelet for Jobs, and ``kubectl create job --from=cronjob/NAME``.

On the full tier the CronJob and Job controllers are real, but kwok only
pretends to run Pods: a Job's Pod turns Running and then Succeeded without its
container ever starting. A scheduled rollback drill's whole effect is what its
container does (``modelcanary drill create`` writes one RollbackDrill), so a
test of the schedule needs that container to run for real.

:class:`JobPodRunner` plays the missing half of the kubelet. For each Pod of a
Job that the scheduler has bound, it runs the Pod's first container as a local
process, once, and records what happened. The process authenticates the way
the container would: with a token from the TokenRequest API for the Pod's own
ServiceAccount, bound to the Pod. It never sees the admin kubeconfig, so a run
has exactly the ServiceAccount's rights and an RBAC mistake fails the run as it
would in a cluster.

What the runner does *not* do is report back: kwok still decides the Pod's
phase (Succeeded, whatever the process's exit code) and therefore the Job's
status. Tests read the outcome from :meth:`JobPodRunner.runs`.

:func:`trigger_cronjob` starts a Job from a CronJob now, exactly as kubectl
does, so a test need not wait for a schedule to fire.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kr8s
import yaml
from kr8s.objects import CronJob, Job

from e2e.dataplane.operator import REPO_ROOT
from e2e.harness.kubernetes import ControlPlane, wait_for
from e2e.harness.processes import log_tail, terminate_group

log = logging.getLogger(__name__)

DEFAULT_SELECTOR = "app.kubernetes.io/managed-by=modelcanary"
INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"
# The API server refuses shorter tokens; a run lasts seconds, so the minimum
# is the closest to a kubelet's short-lived projected token that is allowed.
TOKEN_SECONDS = 600
_MAX_JOB_NAME = 63  # the Job controller copies the name into a label on each Pod
_GENERATED_SUFFIX = 5  # characters the API server appends to a generateName


# --------------------------------------------------------------------------- triggering


def job_from_cronjob(cronjob: dict[str, Any]) -> dict[str, Any]:
    """The Job ``kubectl create job --from=cronjob/NAME`` would create, with a generated name.

    Pure, so a test can change the Pod template (say, the container's args)
    before creating the Job and still get a Job the CronJob owns.
    """
    # A JSON round trip is a deep copy that also turns kr8s's Box into plain dicts.
    source: dict[str, Any] = json.loads(json.dumps(cronjob))
    metadata = source["metadata"]
    template = source["spec"]["jobTemplate"]
    template_metadata = template.get("metadata") or {}
    # Template annotations win over kubectl's own, as in kubectl.
    annotations = {INSTANTIATE_ANNOTATION: "manual", **(template_metadata.get("annotations") or {})}
    prefix = f"{metadata['name']}-manual-"[: _MAX_JOB_NAME - _GENERATED_SUFFIX]
    job_metadata: dict[str, Any] = {
        "generateName": prefix,
        "namespace": metadata["namespace"],
        "annotations": annotations,
        "ownerReferences": [
            {
                # kubectl leaves blockOwnerDeletion unset on purpose: setting it
                # needs the cronjobs/finalizers permission.
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": metadata["name"],
                "uid": metadata["uid"],
                "controller": True,
            }
        ],
    }
    if template_metadata.get("labels"):
        job_metadata["labels"] = template_metadata["labels"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_metadata,
        "spec": template["spec"],
    }


def trigger_cronjob(api: kr8s.Api, namespace: str, name: str) -> str:
    """Create a Job from CronJob ``name`` now, as ``kubectl create job --from`` does; its name."""
    cronjob = CronJob.get(name, namespace=namespace, api=api)
    job = Job(job_from_cronjob(cronjob.raw), api=api)
    job.create()
    return str(job.name)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class JobRun:
    """One Pod's container, run once as a local process."""

    pod: str
    job: str
    service_account: str
    argv: tuple[str, ...]
    exit_code: int | None
    """None when the process never ran to an exit (no token, no command, timed out)."""
    output: str
    """The tail of stdout and stderr, interleaved."""
    phase_at_start: str
    """The Pod's phase as the runner found it; kwok may already have said Succeeded."""
    kubeconfig: Path
    """The ServiceAccount credential the run had; valid while the Pod exists."""
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def _controlling_job(pod: dict[str, Any]) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref["name"])
    return None


def container_argv(container: dict[str, Any]) -> list[str]:
    """The process a container would run, for this machine.

    ``modelcanary`` is the operator image's entrypoint; here it is this
    interpreter running the package from the source tree. Anything else is
    looked up on PATH. An image's default entrypoint is unknown outside the
    image, so a container without a command cannot be run.
    """
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        raise ValueError(f"container {container.get('name')!r} has no command")
    if command[0] == "modelcanary":
        command = [sys.executable, "-m", "modelcanary", *command[1:]]
    return [*command, *args]


class JobPodRunner:
    """Run the container of every scheduled Job Pod in ``namespace``; a background thread.

    Only Pods matching ``selector`` and controlled by a Job are run, each once.
    Runs happen one at a time, in the order the Pods are found.
    """

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        *,
        workdir: Path,
        selector: str = DEFAULT_SELECTOR,
        run_timeout: float = 60.0,
        interval: float = 0.2,
    ) -> None:
        self.plane = plane
        self.namespace = namespace
        self.workdir = workdir
        self.selector = selector
        self.run_timeout = run_timeout
        self.interval = interval
        self.last_error: str | None = None
        self._runs: list[JobRun] = []
        self._handled: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> JobPodRunner:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="job-pod-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        current = self._current
        if current is not None and current.poll() is None:
            terminate_group(current.pid, grace=5.0, wait=current.wait)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> JobPodRunner:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- results ---------------------------------------------------------------------

    def runs(self) -> list[JobRun]:
        with self._lock:
            return list(self._runs)

    def wait_for_runs(self, count: int, timeout: float = 60.0) -> list[JobRun]:
        """Block until at least ``count`` runs have finished; all runs so far."""

        def enough() -> list[JobRun] | None:
            runs = self.runs()
            return runs if len(runs) >= count else None

        try:
            found: list[JobRun] = wait_for(
                enough, timeout=timeout, what=f"{count} Job Pod run(s) in {self.namespace}"
            )
        except TimeoutError as error:
            raise TimeoutError(
                f"{error}; runs so far: {self.runs()}; last error: {self.last_error}"
            ) from None
        return found

    # -- the loop --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
                self.last_error = None
            except Exception as error:
                # The poller outlives any one failed poll: an API server restarting
                # (httpx's ConnectError is no OSError), a 5xx, one odd object.
                self.last_error = repr(error)
                log.warning("job pod runner: %r", error)
            self._stop.wait(self.interval)

    def sync_once(self) -> None:
        """Run every scheduled Job Pod not run yet."""
        for pod in self._list_pods():
            uid = str(pod["metadata"]["uid"])
            job = _controlling_job(pod)
            if uid in self._handled or job is None or self._stop.is_set():
                continue
            if pod["metadata"].get("deletionTimestamp"):
                # A Pod deleted before a kubelet got to it never runs.
                self._handled.add(uid)
                continue
            if not pod["spec"].get("nodeName"):
                continue  # not bound yet; a kubelet only sees bound Pods
            self._handled.add(uid)
            run = self._run_pod(pod, job)
            with self._lock:
                self._runs.append(run)

    def _list_pods(self) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": self.selector})
        status, body = self.plane.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods?{query}"
        )
        if status != 200:
            raise RuntimeError(f"listing pods failed with HTTP {status}: {body}")
        # Oldest first, so runs happen in the order the Job controller made them.
        items: list[dict[str, Any]] = body["items"]
        return sorted(items, key=lambda pod: str(pod["metadata"]["creationTimestamp"]))

    def _run_pod(self, pod: dict[str, Any], job: str) -> JobRun:
        name = str(pod["metadata"]["name"])
        account = str(pod["spec"].get("serviceAccountName") or "default")
        run_dir = self.workdir / name
        run_dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = run_dir / "kubeconfig"
        log_path = run_dir / "output.log"
        container = pod["spec"]["containers"][0]
        argv: list[str] = []
        exit_code: int | None = None
        error: str | None = None
        try:
            argv = container_argv(container)
            self._write_kubeconfig(kubeconfig, self._request_token(pod, account))
        except (ValueError, RuntimeError) as failure:
            error = str(failure)
        else:
            exit_code, error = self._execute(
                argv, self._env(container, kubeconfig), run_dir, log_path
            )
        return JobRun(
            pod=name,
            job=job,
            service_account=account,
            argv=tuple(argv),
            exit_code=exit_code,
            output=log_tail(log_path) if log_path.exists() else "",
            phase_at_start=str(pod.get("status", {}).get("phase", "")),
            kubeconfig=kubeconfig,
            error=error,
        )

    def _request_token(self, pod: dict[str, Any], account: str) -> str:
        """A token for ``account``, bound to ``pod``, as the kubelet asks for a projected one.

        Bound to the Pod, it stops working when the Pod is deleted; audiences
        are left to the API server's default, which is what a kubelet uses for
        the in-cluster API.
        """
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        status, answer = self.plane.request("POST", path, body)
        if status != 201:
            raise RuntimeError(
                f"TokenRequest for serviceaccount {account} got HTTP {status}: {answer}"
            )
        return str(answer["status"]["token"])

    def _write_kubeconfig(self, path: Path, token: str) -> None:
        context = "in-cluster"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": self.plane.server,
                        "certificate-authority": str(self.plane.ca_cert),
                    },
                }
            ],
            "users": [{"name": context, "user": {"token": token}}],
            # In a Pod the namespace comes from the ServiceAccount mount.
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": self.namespace},
                }
            ],
            "current-context": context,
        }
        # Created with owner-only rights from the start: it holds a live token.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(yaml.safe_dump(config, sort_keys=False))

    @staticmethod
    def _env(container: dict[str, Any], kubeconfig: Path) -> dict[str, str]:
        env = dict(os.environ)
        # Whatever credentials the harness itself runs with must not leak in.
        for inherited in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(inherited, None)
        for entry in container.get("env") or []:
            # valueFrom needs a kubelet's view of Secrets and fields; literals suffice here.
            if "value" in entry:
                env[str(entry["name"])] = str(entry["value"])
        env["KUBECONFIG"] = str(kubeconfig)
        env["PYTHONPATH"] = str(REPO_ROOT / "operator")
        return env

    def _execute(
        self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path
    ) -> tuple[int | None, str | None]:
        with log_path.open("wb") as output:
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    # Its own group, so a timeout or stop() ends its children too.
                    start_new_session=True,
                )
            except OSError as error:
                return None, f"cannot start {argv[0]}: {error}"
            self._current = popen
            if self._stop.is_set():
                # stop() ran between the check in sync_once and Popen, and missed it.
                terminate_group(popen.pid, grace=5.0, wait=popen.wait)
            try:
                return popen.wait(timeout=self.run_timeout), None
            except subprocess.TimeoutExpired:
                terminate_group(popen.pid, grace=5.0, wait=popen.wait)
                return None, f"timed out after {self.run_timeout:.0f}s"
            finally:
                self._current = None
