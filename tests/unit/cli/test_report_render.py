"""Drawing the report: SVG, PNG and a self-contained HTML page from one timeline."""

from __future__ import annotations

import argparse
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modelcanary.cli import report
from modelcanary.cli.timeline import (
    BoundLine,
    Marker,
    MarkerKind,
    MetricPanel,
    Rollout,
    Timeline,
    Window,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 22, 0, 0, tzinfo=UTC)
REASON = "error-rate: candidate 0.21 > max 0.05"


def ts(seconds: float) -> float:
    return (T0 + timedelta(seconds=seconds)).timestamp()


def timeline() -> Timeline:
    seconds = range(0, 121, 5)
    weight = tuple((ts(s), 10.0 if 30 <= s < 100 else 0.0) for s in seconds)
    canary = [s for s in seconds if 30 <= s <= 100]
    return Timeline(
        namespace="ml",
        name="fraud-detector",
        window=Window(T0, T0 + timedelta(seconds=120)),
        candidate_weight=weight,
        stable_weight=tuple((at, 100 - v) for at, v in weight),
        metrics=(
            MetricPanel(
                name="error-rate",
                candidate=tuple((ts(s), 0.2) for s in canary),
                stable=tuple((ts(s), 0.0) for s in canary),
                bounds=(BoundLine("max 0.05", "max", ((ts(0), 0.05), (ts(120), 0.05)), False),),
                failed=True,
            ),
            MetricPanel(
                name="p99-latency",
                candidate=tuple((ts(s), 0.035) for s in canary),
                stable=tuple((ts(s), 0.033) for s in canary),
                bounds=(
                    BoundLine("max 2x stable", "max", tuple((ts(s), 0.066) for s in canary), True),
                ),
                failed=False,
            ),
        ),
        markers=(
            Marker(ts(30), MarkerKind.START, "canary 2.0.0-errors starts", "cccc333333"),
            Marker(ts(30), MarkerKind.STEP, "10%"),
            Marker(ts(100), MarkerKind.ROLLBACK, "rolled back 2.0.0-errors", "cccc333333", REASON),
        ),
        rollouts=(
            Rollout(
                revision="cccc333333",
                version="2.0.0-errors",
                outcome="RolledBack",
                reason=REASON,
                created_at=T0 + timedelta(seconds=30),
                finished_at=T0 + timedelta(seconds=100),
                first_revision=False,
            ),
        ),
    )


def test_svg_is_well_formed_with_a_panel_per_metric_and_the_marker_labels() -> None:
    svg = report.render_svg(timeline())
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.tag.endswith("svg")
    texts = "".join(root.itertext())
    for label in (
        "traffic weights",
        "error-rate (failed)",
        "p99-latency",
        "rolled back 2.0.0-errors",
        "10%",
    ):
        assert label in texts
    # One axes for the weights and one per metric.
    assert len(re.findall(r'<g id="axes_\d+"', svg)) == 3


def test_png_has_the_png_signature_and_a_sensible_size() -> None:
    png = report.render_png(timeline())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert width >= 1000
    assert height > width / 2  # three stacked panels


def test_html_is_self_contained_with_the_svg_the_summary_and_each_metric() -> None:
    page = report.render_html(timeline())
    assert page.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no URL of any kind, no external script, style or image.
    assert "http://" not in page
    assert "https://" not in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert page.count("<svg") == 1
    assert "<?xml" not in page
    summary = page[page.index('<table class="summary">') : page.index("</table>")]
    assert "cccc333333" in summary
    assert "2.0.0-errors" in summary
    assert "RolledBack" in summary
    assert "error-rate: candidate 0.21 &gt; max 0.05" in summary
    assert "1m10s" in summary
    for metric in ("error-rate", "p99-latency"):
        assert metric in page[page.index("<svg") :]
    assert "rolled back 2.0.0-errors: error-rate" in page
    assert 'class="legend"' in page


def test_an_empty_panel_says_so_rather_than_being_blank() -> None:
    empty = Timeline(
        namespace="ml",
        name="fraud-detector",
        window=Window(T0, T0 + timedelta(minutes=1)),
        candidate_weight=((ts(0), 0.0),),
        stable_weight=((ts(0), 100.0),),
        metrics=(MetricPanel("error-rate", (), (), (), False),),
        markers=(),
        rollouts=(),
    )
    page = report.render_html(empty)
    assert "no values in this window" in page
    assert "no rollout in this window" in page


@pytest.mark.parametrize(("suffix", "signature"), [(".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_write_picks_the_format_from_the_extension(
    tmp_path: Path, suffix: str, signature: bytes
) -> None:
    output = tmp_path / f"report{suffix.upper()}"
    report.write(timeline(), output)
    assert output.read_bytes().startswith(signature)


def test_an_unknown_extension_is_a_usage_error_before_anything_is_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        name="fraud-detector",
        namespace=None,
        # A kubeconfig that does not exist: reaching for it would be exit 1, not 2.
        kubeconfig=str(tmp_path / "missing"),
        output=tmp_path / "report.pdf",
        prometheus=None,
        revision=None,
        since=None,
        until=None,
        step=None,
    )
    assert report.run(args) == 2
    assert ".html, .svg, .png" in capsys.readouterr().err
    args.output = tmp_path / "report.html"
    args.step = "soon"
    assert report.run(args) == 2
    assert "--step" in capsys.readouterr().err


def test_the_prometheus_selector_quotes_its_values() -> None:
    assert report.selector("ml", 'a"b') == 'namespace="ml",name="a\\"b"'
