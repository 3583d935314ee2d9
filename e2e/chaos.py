"""A seeded chaos run: canaries, good and bad, while the world around them fails.

One ModelDeployment rolls out a series of candidates, each either good or
answering 20% errors, chosen by the seed. Meanwhile a chaos thread, driven by
the same seed, keeps breaking what a production cluster breaks: it SIGKILLs
the operator (an OOM kill, a lost node) and starts it again, stops Prometheus
for a few seconds (hold, never a blind rollback), and stops kube-apiserver and
starts it again on its port (a control-plane upgrade). One fault at a time, at
random moments, so each lands wherever the rollout happens to be.

What must come out regardless: every good candidate promoted and every bad one
rolled back (a *wrong final state* otherwise), traffic back on the stable
revision after each, and a history holding each revision exactly once (none
*lost*, none *duplicated*). The count metrics run at alpha 0.001 here, so that a
false rollback by the statistics themselves (at most 0.1% per good canary) is
not mistaken for one caused by the chaos.

Used by ``make bench-chaos`` (``bench/chaos.py``, 20 canaries and more) and, short,
by ``tests/e2e/test_chaos.py``. Every fault and outcome goes to a JSON-lines log.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from e2e.dataplane.scenario import CanaryScenario, healthy_on
from e2e.harness.kubernetes import ControlPlane

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BAD_SUFFIX = "-bad"
BAD_FAULTS = {"error_rate": 0.2}
ALPHA = 0.001
STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "4s"}},
    {"setWeight": 50},
    {"pause": {"duration": "4s"}},
    {"setWeight": 100},
]
FAULTS = ("kill-operator", "stop-prometheus", "restart-apiserver")


def faults_for(version: str) -> dict[str, Any]:
    return dict(BAD_FAULTS) if version.endswith(BAD_SUFFIX) else {}


@dataclass
class ChaosReport:
    seed: int
    canaries: int = 0
    good: int = 0
    bad: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    wrong_final_states: list[str] = field(default_factory=list)
    lost_entries: list[str] = field(default_factory=list)
    duplicated_entries: list[str] = field(default_factory=list)
    seconds_per_canary: list[float] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.wrong_final_states or self.lost_entries or self.duplicated_entries)

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("seed", self.seed),
            ("canaries (good / bad)", f"{self.canaries} ({self.good} / {self.bad})"),
            ("operator SIGKILLs", self.faults["kill-operator"]),
            ("Prometheus outages", self.faults["stop-prometheus"]),
            ("kube-apiserver restarts", self.faults["restart-apiserver"]),
            ("wrong final states", len(self.wrong_final_states)),
            ("lost history entries", len(self.lost_entries)),
            ("duplicated history entries", len(self.duplicated_entries)),
        ]


class _Chaos:
    """The fault thread: one fault at a time, at seeded random moments."""

    def __init__(
        self,
        world: CanaryScenario,
        plane: ControlPlane,
        rng: random.Random,
        record: Callable[..., None],
        *,
        gap: tuple[float, float],
    ) -> None:
        self.world, self.plane, self.rng, self.record = world, plane, rng, record
        self.gap = gap
        self.done = Counter[str]()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def __enter__(self) -> _Chaos:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.rng.uniform(*self.gap)):
                fault = self.rng.choice(FAULTS)
                down = round(self.rng.uniform(3.0, 10.0), 1)
                self.record("fault", fault=fault, seconds=down)
                getattr(self, "_" + fault.replace("-", "_"))(down)
                self.done[fault] += 1
        except BaseException as error:  # reported by the run, which then fails
            self.error = error
            log.exception("chaos thread")

    def _kill_operator(self, _: float) -> None:
        self.world.operator.kill()
        self.world.operator.start(timeout=120)

    def _stop_prometheus(self, down: float) -> None:
        prometheus = self.world.prometheus
        port = prometheus.port
        prometheus.stop()
        self._stop.wait(down)
        prometheus.start(port=port)

    def _restart_apiserver(self, down: float) -> None:
        self.plane.stop_component("kube-apiserver")
        try:
            self._stop.wait(down)
        finally:
            self.plane.start_component("kube-apiserver")


def _entries_by_version(status: dict[str, Any]) -> Counter[str]:
    return Counter(e["predictor"]["model"]["version"] for e in status.get("history") or [])


def _ended(version: str) -> Callable[[dict[str, Any]], bool]:
    """A status predicate: ``version``'s canary is over, whichever way."""
    promoted = healthy_on(version)

    def check(status: dict[str, Any]) -> bool:
        if promoted(status):
            return True
        entries = [
            e for e in status.get("history") or [] if e["predictor"]["model"]["version"] == version
        ]
        over = any(e["outcome"] in ("RolledBack", "Aborted") for e in entries)
        return over and status.get("canaryRevision") is None

    return check


def run_chaos(
    world: CanaryScenario,
    plane: ControlPlane,
    *,
    canaries: int,
    seed: int,
    log_path: Path,
    gap: tuple[float, float] = (6.0, 18.0),
    per_canary_timeout: float = 300.0,
) -> ChaosReport:
    """Roll out ``canaries`` candidates under chaos; the world must be started."""
    # Seeded for a reproducible run, not for secrecy.
    rng = random.Random(seed)  # noqa: S311
    chaos_rng = random.Random(seed + 1)  # noqa: S311
    report = ChaosReport(seed=seed)
    lock = threading.Lock()
    started = time.monotonic()

    def record(kind: str, **fields: Any) -> None:
        line = {"t": round(time.monotonic() - started, 2), "kind": kind, **fields}
        with lock, log_path.open("a") as out:
            out.write(json.dumps(line) + "\n")

    def manifest(version: str) -> dict[str, Any]:
        body = world.manifest(version, steps=STEPS, revisionHistoryLimit=canaries + 5)
        body["spec"]["analysis"]["alpha"] = ALPHA
        return body

    stable_version = "0.0.1"
    applied = [stable_version]
    world.apply(manifest(stable_version))
    world.wait_for_status(healthy_on(stable_version), timeout=120, what="the first revision")
    with _Chaos(world, plane, chaos_rng, record, gap=gap) as chaos:
        for index in range(canaries):
            bad = rng.random() < 0.5
            version = f"{index + 1}.0.0" + (BAD_SUFFIX if bad else "")
            report.canaries += 1
            report.bad += bad
            report.good += not bad
            record("canary", version=version, bad=bad)
            began = time.monotonic()
            _retry(functools.partial(world.apply, manifest(version)), what=f"apply {version}")
            applied.append(version)
            status = world.wait_for_status(
                _ended(version), timeout=per_canary_timeout, what=f"{version} to end"
            )
            report.seconds_per_canary.append(time.monotonic() - began)
            promoted = healthy_on(version)(status)
            if promoted == bad:
                wrong = (
                    f"{version}: {'promoted' if promoted else 'rolled back'}: {status['message']}"
                )
                report.wrong_final_states.append(wrong)
            if promoted:
                stable_version = version
            record("ended", version=version, promoted=promoted, message=status.get("message"))
            assert world.route_sync is not None
            world.route_sync.wait_until_applied(
                {world.revision_service(status["stableRevision"]): 100}, timeout=120
            )
            if chaos.error is not None:
                raise RuntimeError(f"the chaos thread failed: {chaos.error!r}")
    report.faults = chaos.done
    final = _retry(world.status, what="the final status")
    seen = _entries_by_version(final)
    report.lost_entries = [v for v in applied if seen[v] == 0]
    report.duplicated_entries = [v for v, n in seen.items() if n > 1]
    record("report", **{name: value for name, value in report.rows()})
    return report


def _retry(action: Callable[[], _T], *, what: str, timeout: float = 60.0) -> _T:
    """A call while kube-apiserver may be restarting (or a pooled connection to the one
    before it is stale): retried until it is back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {error!r}") from error
            log.warning("%s: %r; retrying", what, error)
            time.sleep(0.5)
