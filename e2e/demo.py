"""``make demo``: the canary story on a local cluster, told in the terminal.

A new user's first minutes decide whether they adopt the operator, so the demo
runs the real thing, not a recording: the full-tier control plane, Prometheus,
nginx, real model servers under steady load and the operator as a process, all
from the same harness the end-to-end tests stand on (``CanaryScenario``). The
ModelDeployment is ``examples/demo.yaml``; each chapter changes only its model:

1. the first revision becomes stable;
2. a good candidate rolls 10 -> 50 -> 100 and is promoted;
3. a bad candidate (20% errors) is caught and rolled back automatically;
4. a live rollback drill runs and reports its time to restore.

A live view (``modelcanary status``'s own) shows phase, step, weights, metric
values against their bounds and events throughout. The summary is built from
what the operator recorded in the ModelDeployment's status, not from what the
demo meant to happen, and is also written as JSON for the test that runs
``DEMO_FAST=1 make demo``. The control plane and Prometheus stay up afterwards
so the user can explore with kubectl; ``make demo-down`` stops them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import kr8s
import yaml
from kr8s.objects import Namespace, new_class
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from e2e.dataplane.scenario import CanaryScenario
from e2e.harness.__main__ import ClusterExists, start_cluster
from e2e.harness.kubernetes import Tier
from e2e.harness.processes import StartupError
from modelcanary.cli.drill import drill_manifest
from modelcanary.cli.view import status_lines, status_renderable

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "demo.yaml"
NAMESPACE = "demo"
MODEL = str(yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"])
RollbackDrill = new_class("RollbackDrill.modelcanary.io/v1alpha1", namespaced=True)

FIRST, GOOD, BAD = "1.0.0", "1.1.0", "2.0.0"
# What is wrong with the bad candidate: one answer in five is a 500.
FAULTS: dict[str, dict[str, float]] = {BAD: {"error_rate": 0.2}}


@dataclass(frozen=True)
class Pace:
    """How long the story lingers. DEMO_FAST=1 is for CI: same story, shorter pauses."""

    step_pause: str
    bake: str
    between_chapters: float

    @classmethod
    def of(cls, fast: bool) -> Pace:
        return cls("4s", "4s", 0.5) if fast else cls("10s", "10s", 3.0)


@dataclass
class Chapter:
    title: str
    outcome: str = ""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def demo_manifest(version: str, prometheus_url: str, pace: Pace) -> dict[str, Any]:
    """examples/demo.yaml with the local Prometheus, the model ``version`` and the pace."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec = manifest["spec"]
    spec["predictor"]["model"].update(version=version, uri=f"s3://models/fraud/{version}")
    spec["analysis"]["prometheus"]["address"] = prometheus_url
    for step in spec["strategy"]["steps"]:
        if "pause" in step:
            step["pause"] = {"duration": pace.step_pause}
    spec["strategy"]["bake"] = {"duration": pace.bake}
    return manifest


class Storyteller:
    """Applies each chapter's change and shows the ModelDeployment until it settles."""

    def __init__(self, world: CanaryScenario, console: Console, pace: Pace) -> None:
        self.world = world
        self.console = console
        self.pace = pace
        self.chapters: list[Chapter] = []
        self._last_block: list[str] = []

    # -- the story -----------------------------------------------------------------

    def tell(self) -> list[Chapter]:
        self._first_revision()
        self._good_candidate()
        self._bad_candidate()
        self._drill()
        return self.chapters

    def _first_revision(self) -> None:
        chapter = self._open(f"1. The first revision ({FIRST}) becomes stable")
        self._apply(FIRST)
        status = self._watch(
            lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") is not None,
            timeout=120,
        )
        chapter.outcome = f"stable: revision {status['stableRevision']} ({FIRST})"
        self._close(chapter)

    def _good_candidate(self) -> None:
        chapter = self._open(f"2. A good candidate ({GOOD}) rolls 10 -> 50 -> 100")
        before = self.world.status().get("stableRevision")
        self._apply(GOOD)
        weights: list[int] = []
        status = self._watch(
            lambda s: (
                s.get("phase") == "Healthy"
                and s.get("canaryRevision") is None
                and s.get("stableRevision") not in (None, before)
            ),
            timeout=180,
            weights=weights,
        )
        chapter.details["weights"] = weights
        chapter.outcome = (
            f"promoted: revision {status['stableRevision']} ({GOOD}) after weights "
            + " -> ".join(str(w) for w in weights)
        )
        self._close(chapter)

    def _bad_candidate(self) -> None:
        chapter = self._open(f"3. A bad candidate ({BAD}) answers 20% errors")
        self._apply(BAD)
        weights: list[int] = []
        status = self._watch(lambda s: s.get("phase") == "RolledBack", timeout=180, weights=weights)
        history = status.get("history") or []
        reason = history[0].get("reason", "") if history else ""
        chapter.details["weights"] = weights
        chapter.outcome = f"rolled back automatically: {reason}"
        self._close(chapter)

    def _drill(self) -> None:
        chapter = self._open("4. A live rollback drill rehearses the way back")
        manifest = drill_manifest(self.world.name, "live", "manual")
        manifest["metadata"]["namespace"] = NAMESPACE
        drill = RollbackDrill(manifest, api=self.world.api)
        drill.create()

        def finished(status: dict[str, Any]) -> bool:
            if (status.get("lastDrill") or {}).get("name") == drill.name:
                return True
            drill.refresh()
            # A refused drill is never recorded as a result: say why instead of waiting.
            drill_status: dict[str, Any] = dict(drill.raw).get("status") or {}
            if drill_status.get("phase") == "Refused":
                raise RuntimeError(f"the drill was refused: {drill_status.get('reason')}")
            return False

        status = self._watch(finished, timeout=180)
        last = status["lastDrill"]
        restore = last.get("timeToRestoreSeconds")
        chapter.details["drill"] = drill.name
        chapter.outcome = (
            f"drill {drill.name}: {'passed' if last.get('succeeded') else 'FAILED'}, "
            f"time to restore {restore:.2f} s"
            if restore is not None
            else f"drill {drill.name}: {'passed' if last.get('succeeded') else 'FAILED'}"
            f" {last.get('reason', '')}"
        )
        self._close(chapter)

    # -- telling it ----------------------------------------------------------------

    def _open(self, title: str) -> Chapter:
        chapter = Chapter(title)
        chapter.details["started"] = time.monotonic()
        self.console.rule(f"[bold]{title}")
        return chapter

    def _close(self, chapter: Chapter) -> None:
        chapter.seconds = time.monotonic() - chapter.details.pop("started")
        self.console.print(f"[green]✓[/green] {chapter.outcome}  [dim]({chapter.seconds:.0f} s)")
        self.chapters.append(chapter)
        time.sleep(self.pace.between_chapters)  # a pause for the reader, not for the cluster

    def _apply(self, version: str) -> None:
        self.console.print(f"kubectl apply: examples/demo.yaml with model {version}")
        self.world.apply(demo_manifest(version, self.world.prometheus.url, self.pace))

    def _watch(
        self,
        settled: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        weights: list[int] | None = None,
    ) -> dict[str, Any]:
        """Show the object live until ``settled(status)``; collect the canary weights seen."""
        deadline = time.monotonic() + timeout
        events: list[Mapping[str, Any]] = []
        events_read = 0.0
        with self._view() as show:
            while True:
                found = self.world.get()
                md: dict[str, Any] = found.raw if found is not None else {}
                status = dict(md.get("status") or {})
                weight = int(status.get("canaryWeight") or 0)
                if weights is not None and weight and (not weights or weights[-1] != weight):
                    weights.append(weight)
                if time.monotonic() - events_read > 1.0:
                    events, events_read = self._events(), time.monotonic()
                show(md, events)
                if settled(status):
                    return status
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the story stalled: phase {status.get('phase')}, "
                        f"message {status.get('message')!r} after {timeout:.0f} s"
                    )
                time.sleep(0.25)

    @contextmanager
    def _view(self) -> Iterator[Callable[[Mapping[str, Any], list[Mapping[str, Any]]], None]]:
        if self.console.is_terminal:
            with Live(console=self.console, refresh_per_second=4, transient=False) as live:
                yield lambda md, events: live.update(Panel(status_renderable(md, events[-5:])))
            return

        # Not a terminal (CI, a pipe): print the view only when it changes, plainly.
        def show(md: Mapping[str, Any], events: list[Mapping[str, Any]]) -> None:
            status = md.get("status") or {}
            key = [str(status.get(k)) for k in ("phase", "currentStep", "canaryWeight")]
            if key != self._last_block:
                self._last_block = key
                print("\n".join(status_lines(md, events[-3:])), flush=True)
                print(flush=True)

        yield show

    def _events(self) -> list[Mapping[str, Any]]:
        found = self.world.api.get(
            "events",
            namespace=NAMESPACE,
            field_selector=f"involvedObject.name={self.world.name}",
        )
        raw = [event.raw for event in found if not isinstance(event, dict)]
        return sorted(raw, key=_event_time)


def _event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")


# -- the summary ---------------------------------------------------------------------


def summarise(status: Mapping[str, Any], chapters: list[Chapter]) -> dict[str, Any]:
    """The story as the operator recorded it: revision history and drill results."""
    revisions = [
        {
            "revision": entry["revision"],
            "version": entry["predictor"]["model"]["version"],
            "outcome": entry["outcome"],
            "reason": entry.get("reason", ""),
            "seconds": _seconds(entry.get("createdAt"), entry.get("finishedAt")),
        }
        for entry in reversed(status.get("history") or [])
    ]
    drills = [
        {
            "name": drill["name"],
            "mode": drill["mode"],
            "succeeded": drill["succeeded"],
            "timeToRestoreSeconds": drill.get("timeToRestoreSeconds"),
            "reason": drill.get("reason", ""),
        }
        for drill in status.get("drillHistory") or []
    ]
    return {
        "name": MODEL,
        "stableRevision": status.get("stableRevision"),
        "lastKnownGood": (status.get("lastKnownGood") or {}).get("revision"),
        "revisions": revisions,
        "drills": drills,
        "chapters": [
            {"title": c.title, "outcome": c.outcome, "seconds": round(c.seconds, 1), **c.details}
            for c in chapters
        ],
    }


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    took = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(took.total_seconds(), 1)


def summary_table(summary: Mapping[str, Any]) -> Group:
    revisions = Table(title="Revisions, as the operator recorded them", title_justify="left")
    for column in ("revision", "model", "outcome", "took", "reason"):
        revisions.add_column(column)
    for entry in summary["revisions"]:
        took = f"{entry['seconds']:.0f} s" if entry["seconds"] is not None else "-"
        revisions.add_row(
            entry["revision"], entry["version"], entry["outcome"], took, entry["reason"]
        )
    drills = Table(title="Rollback drills", title_justify="left")
    for column in ("drill", "mode", "result", "time to restore"):
        drills.add_column(column)
    for drill in summary["drills"]:
        restore = drill["timeToRestoreSeconds"]
        drills.add_row(
            drill["name"],
            drill["mode"],
            "passed" if drill["succeeded"] else f"failed: {drill['reason']}",
            f"{restore:.2f} s" if restore is not None else "-",
        )
    return Group(revisions, drills)


def write_report(plane_kubeconfig: Path, prometheus_url: str, path: Path) -> str:
    """The timeline picture, drawn by ``modelcanary report`` as a user would run it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelcanary",
            "report",
            MODEL,
            "-n",
            NAMESPACE,
            "--kubeconfig",
            str(plane_kubeconfig),
            "--prometheus",
            prometheus_url,
            "-o",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)])},
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"not written: {said[-1] if said else f'exit code {done.returncode}'}"
    return str(path)


# -- the command ---------------------------------------------------------------------


def run(directory: Path, *, fast: bool) -> int:
    # kr8s warns on every client that it was not tested beyond 1.35; the demo's
    # reader has nothing to do about that.
    warnings.filterwarnings("ignore", message="Kubernetes version .* is not supported")
    # Off a terminal rich assumes 80 columns; the tables and paths need more.
    console = Console(width=None if sys.stdout.isatty() else 160)
    pace = Pace.of(fast)
    began = time.monotonic()
    console.rule("[bold]Model Canary Operator: the demo")
    console.print("Starting a local cluster (kube-apiserver, etcd, controller-manager,")
    console.print("scheduler, kwok nodes) and Prometheus ...")
    try:
        plane, prometheus = start_cluster(
            directory, Tier.FULL, with_prometheus=True, gateway_api=True
        )
    except ClusterExists as error:
        console.print(f"[red]{error}[/red] (or `make demo-down`)")
        return 1
    except (StartupError, OSError, TimeoutError) as error:
        console.print(f"[red]the cluster did not start: {error}")
        return 1
    assert prometheus is not None
    directory = directory.resolve()
    api = kr8s.api(kubeconfig=str(plane.kubeconfig))
    Namespace({"metadata": {"name": NAMESPACE}}, api=api).create()
    console.print("Starting nginx, a model server per revision, steady load (100 rps)")
    console.print("and the operator ...")
    world = CanaryScenario(
        plane,
        api,
        NAMESPACE,
        prometheus,
        directory / "demo",
        name=MODEL,
        faults_for=lambda version: FAULTS.get(version, {}),
    )
    try:
        with world:
            world.scrape_operator()
            chapters = Storyteller(world, console, pace).tell()
            final = world.status()
    except (TimeoutError, RuntimeError, kr8s.ServerError) as error:
        console.print(f"[red]The demo stopped: {error}")
        console.print(f"Logs: {directory / 'demo'}; the cluster is still up: `make demo-down`.")
        return 1
    summary = summarise(final, chapters)
    summary["report"] = write_report(plane.kubeconfig, prometheus.url, directory / "report.html")
    summary["kubeconfig"] = str(plane.kubeconfig)
    summary["wallSeconds"] = round(time.monotonic() - began, 1)
    (directory / "demo-summary.json").write_text(json.dumps(summary, indent=2))

    console.rule("[bold]Summary")
    console.print(summary_table(summary))
    console.print(f"Timeline report: {summary['report']}", soft_wrap=True)
    console.print(f"Wall time: {summary['wallSeconds']:.0f} s")
    console.print()
    console.print("The cluster and Prometheus are still up (the model servers and the")
    console.print("operator stopped with the demo). Explore what the operator recorded:")
    console.print(f"  export KUBECONFIG={plane.kubeconfig}", soft_wrap=True)
    console.print(
        f"  {plane.toolchain.kubectl} -n {NAMESPACE} get modeldeployments,rollbackdrills",
        soft_wrap=True,
    )
    console.print(f"  .venv/bin/modelcanary history {MODEL} -n {NAMESPACE}", soft_wrap=True)
    console.print(f"Prometheus: {prometheus.url}")
    console.print("Stop everything with: make demo-down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    parser.add_argument(
        "--fast",
        action="store_true",
        default=os.environ.get("DEMO_FAST", "") not in ("", "0"),
        help="shorter pauses (default: on when DEMO_FAST is set)",
    )
    args = parser.parse_args(argv)
    return run(args.dir, fast=args.fast)


if __name__ == "__main__":
    sys.exit(main())
