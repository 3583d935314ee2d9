"""``modelcanary report`` end to end: a real rollout drawn from the real Prometheus.

The full tier runs the operator as a process with real model servers, nginx
and load; Prometheus scrapes the operator's own ``/metrics`` (as the chart's
ServiceMonitor would). A good candidate walks 10, 50, 100 and is promoted;
a bad one (20% errors) is rolled back. The command, run as a user runs it,
must draw both and name the failing metric; its error paths must say what
to fix without a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kr8s
import pytest

from e2e.dataplane.scenario import (
    THRESHOLD_PADDING,
    CanaryScenario,
    ModelDeployment,
    healthy_on,
    model_deployment,
    threshold_metrics,
)
from e2e.harness import ControlPlane, PrometheusServer
from e2e.harness.kubernetes import wait_for
from modelcanary.cli import report
from modelcanary.cli.timeline import MarkerKind, build_timeline, choose_window

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
GOOD = "1.0.0"
BETTER = "1.1.0"
BAD = "2.0.0-errors"
QUICK_STEPS = [
    {"setWeight": 10},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {"duration": "3s"}},
    {"setWeight": 100},
]
METRICS = ("error-rate", "p99-latency", "mean-score")


def faults_for(version: str) -> Mapping[str, float]:
    return {"error_rate": 0.2} if version == BAD else {}


@pytest.fixture(scope="module")
def matplotlib_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One font cache for every run of the command, built once, not per process.
    return tmp_path_factory.mktemp("matplotlib")


@pytest.fixture
def rolled_out(
    full_control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> Iterator[tuple[CanaryScenario, datetime]]:
    """1.0.0 serving, 1.1.0 promoted through 10-50-100, then 2.0.0-errors rolled back."""
    # The report's panels draw threshold metrics' values against their bounds.
    with CanaryScenario(
        full_control_plane,
        k8s,
        namespace,
        prometheus,
        tmp_path,
        faults_for=faults_for,
        base_faults=THRESHOLD_PADDING,
        metrics=threshold_metrics(),
    ) as world:
        world.scrape_operator()
        began = datetime.now(UTC)
        world.apply(world.manifest(GOOD))
        world.wait_for_status(healthy_on(GOOD), timeout=90, what=f"{GOOD} serving")
        world.apply(world.manifest(BETTER, steps=QUICK_STEPS, bake="3s"))
        world.wait_for_status(healthy_on(BETTER), timeout=120, what=f"{BETTER} promoted")
        world.apply(world.manifest(BAD, steps=QUICK_STEPS, bake="3s"))
        world.wait_for_status(
            lambda s: s.get("phase") == "RolledBack", timeout=120, what=f"{BAD} rolled back"
        )
        # The report reads what Prometheus has: wait for the scrape that saw the rollback.
        rollbacks = (
            f'modelcanary_rollbacks_total{{namespace="{namespace}",name="{world.name}"}} >= 1'
        )
        wait_for(
            lambda: bool(prometheus.api("/api/v1/query", {"query": rollbacks})["result"]),
            timeout=30,
            what="Prometheus scraping the operator after the rollback",
        )
        yield world, began


def modelcanary_report(
    name: str, namespace: str, kubeconfig: Path, *args: str, cache: Path
) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process with a bare environment, as tests/cli.py runs it,
    plus a writable matplotlib cache (there is no HOME to put one in)."""
    return subprocess.run(
        [
            sys.executable,
            *("-m", "modelcanary", "report", name, "-n", namespace),
            *("--kubeconfig", str(kubeconfig), *args),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "MPLCONFIGDIR": str(cache),
            "PYTHONPATH": f"{REPO / 'operator'}:{REPO}",
        },
    )


def report_on(world: CanaryScenario, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return modelcanary_report(
        world.name, world.namespace, world.plane.kubeconfig, *args, cache=cache
    )


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failing_value_trail(entry: Mapping[str, object], series: Sequence[tuple[float, float]]) -> str:
    """What a failed look at the drawn series needs: the value the operator judged
    and every point Prometheus holds, in seconds from the rollback."""
    finished = datetime.fromisoformat(str(entry["finishedAt"]).replace("Z", "+00:00"))
    points = [(round(at - finished.timestamp(), 1), value) for at, value in series]
    return f"judged: {entry.get('evidence')}; Prometheus, seconds from the rollback: {points}"


def test_the_report_draws_the_promotion_and_the_rollback_from_prometheus(
    rolled_out: tuple[CanaryScenario, datetime], tmp_path: Path, matplotlib_cache: Path
) -> None:
    world, began = rolled_out
    status = world.status()
    by_version = {entry["predictor"]["model"]["version"]: entry for entry in status["history"]}
    assert by_version[BAD]["outcome"] == "RolledBack"
    assert "error-rate" in by_version[BAD]["reason"]
    since = rfc3339(began - timedelta(seconds=5))

    # What the picture is made of, from the real Prometheus: the steps as the
    # operator's weight gauge moved, and the failing value of the error rate.
    md = world.get().raw
    now = datetime.now(UTC)
    window = choose_window(md, now=now, since=since)
    weight, values = report.fetch_series(
        world.prometheus.url, world.namespace, world.name, window, 1
    )
    timeline = build_timeline(md, window, weight, values, now=now)
    steps = [m.label for m in timeline.markers if m.kind is MarkerKind.STEP]
    assert steps[:3] == ["10%", "50%", "100%"], timeline.markers
    assert [m.kind for m in timeline.markers if m.kind is not MarkerKind.STEP] == [
        MarkerKind.START,
        MarkerKind.START,
        MarkerKind.PROMOTION,
        MarkerKind.START,
        MarkerKind.ROLLBACK,
    ]
    panels = {panel.name: panel for panel in timeline.metrics}
    assert tuple(panels) == METRICS
    assert max(v for _, v in panels["error-rate"].candidate) > 0.05, failing_value_trail(
        by_version[BAD], values.get(("error-rate", "candidate"), ())
    )
    assert panels["error-rate"].failed
    assert panels["p99-latency"].stable, "stable's latency is drawn for its relative bound"
    assert [b.label for b in panels["p99-latency"].bounds] == ["max 1", "max 2x stable"]

    # The command, over both rollouts, as HTML.
    prometheus = ("--prometheus", world.prometheus.url)
    page = tmp_path / "report.html"
    result = report_on(
        world, "-o", str(page), "--since", since, *prometheus, cache=matplotlib_cache
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(page)
    text = page.read_text()
    assert "http://" not in text
    assert "https://" not in text
    summary = text[text.index('<table class="summary">') : text.index("</table>")]
    for version, outcome in ((GOOD, "Promoted"), (BETTER, "Promoted"), (BAD, "RolledBack")):
        row = rf"<td>{re.escape(version)}</td>\s*<td[^>]*>{outcome}</td>"
        assert re.search(row, summary), summary
    assert "error-rate" in summary
    assert f"promoted {BETTER}" in text
    assert f"rolled back {BAD}: " in text
    svg = text[text.index("<svg") : text.index("</svg>")]
    for panel in ("traffic weights", "error-rate (failed)", *METRICS[1:]):
        assert panel in svg
    assert len(re.findall(r'<g id="axes_\d+"', svg)) == 1 + len(METRICS)

    # SVG with the default window: the latest rollout, the rollback, alone.
    picture = tmp_path / "latest.svg"
    result = report_on(world, "-o", str(picture), *prometheus, cache=matplotlib_cache)
    assert result.returncode == 0, result.stderr
    svg = picture.read_text()
    assert svg.startswith("<?xml")
    assert f"rolled back {BAD}" in svg
    # A short rollout gets the 15 s floor of padding before its start.
    bad_started = datetime.fromisoformat(by_version[BAD]["createdAt"].replace("Z", "+00:00"))
    window_start = (bad_started - timedelta(seconds=15)).strftime("%Y-%m-%d %H:%M:%SZ")
    assert f"{world.namespace}/{world.name}: {window_start} to " in svg

    # PNG of the promotion, picked by a revision prefix.
    image = tmp_path / "promotion.png"
    revision = by_version[BETTER]["revision"][:6]
    result = report_on(
        world, "-o", str(image), "--revision", revision, *prometheus, cache=matplotlib_cache
    )
    assert result.returncode == 0, result.stderr
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def quiet_model(
    modelcanary_crds: list[str],
    k8s: kr8s.Api,
    kubeconfig: Path,
    namespace: str,
    prometheus: PrometheusServer,
) -> tuple[str, str, Path]:
    """A ModelDeployment no operator ever handled: it exists, nothing ever scraped it."""
    manifest = model_deployment("quiet-model", GOOD, prometheus.url)
    manifest["metadata"]["namespace"] = namespace
    ModelDeployment(manifest, api=k8s).create()
    return "quiet-model", namespace, kubeconfig


def test_the_error_paths_say_what_to_fix(
    quiet_model: tuple[str, str, Path], tmp_path: Path, matplotlib_cache: Path
) -> None:
    name, namespace, kubeconfig = quiet_model
    output = tmp_path / "never.html"

    def run(*args: str, model: str = name) -> subprocess.CompletedProcess[str]:
        result = modelcanary_report(
            model, namespace, kubeconfig, "-o", str(output), *args, cache=matplotlib_cache
        )
        assert "Traceback" not in result.stderr
        return result

    missing = run("--since", "10m", model="no-such-model")
    assert missing.returncode == 1
    assert f"modeldeployment no-such-model not found in namespace {namespace}" in missing.stderr

    no_history = run()
    assert no_history.returncode == 1
    assert "no rollout in status.history yet: give --since" in no_history.stderr

    unreachable = run("--since", "10m", "--prometheus", "http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot reach Prometheus at http://127.0.0.1:1: connection refused" in (
        unreachable.stderr
    )

    unscraped = run("--since", "10m")
    assert unscraped.returncode == 1
    assert f"has no modelcanary_* metrics for {namespace}/{name}" in unscraped.stderr
    assert "monitoring.serviceMonitor.enabled=true" in unscraped.stderr

    usage = run("--step", "often")
    assert usage.returncode == 2
    assert not output.exists()
