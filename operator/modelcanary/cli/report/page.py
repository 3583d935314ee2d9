"""The report as one self-contained HTML page: the SVG inline, a summary table of the
revisions, the decisions in order and a legend; nothing is fetched when it opens."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Final

from modelcanary.cli.report.picture import render_svg
from modelcanary.cli.report.shared import (
    BOUND_COLORS,
    CANDIDATE_COLOR,
    MARKER_STYLES,
    STABLE_COLOR,
    duration,
    when,
)
from modelcanary.cli.timeline import MarkerKind, Timeline

_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_SVG_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def inline_svg(svg: str) -> str:
    """The SVG as an HTML element: no XML prologue or DTD, and no namespace URLs,
    which the HTML parser does not need, so the page names no address at all."""
    svg = _SVG_PROLOGUE.sub("", svg, count=1)
    svg = _SVG_METADATA.sub("", svg)
    return _SVG_NAMESPACES.sub("", svg)


def render_html(timeline: Timeline) -> str:
    title = f"{timeline.namespace}/{timeline.name} rollout timeline"
    rows = "\n".join(
        "<tr>"
        f"<td><code>{html.escape(r.revision)}</code></td>"
        f"<td>{html.escape(r.version)}</td>"
        f'<td class="outcome {html.escape(r.outcome)}">{html.escape(r.outcome)}</td>'
        f"<td>{html.escape(r.reason)}</td>"
        f"<td>{when(r.created_at)}</td>"
        f"<td>{when(r.finished_at) if r.finished_at else 'running'}</td>"
        f"<td>{duration(r.created_at, r.finished_at)}</td>"
        "</tr>"
        for r in timeline.rollouts
    )
    decisions = "\n".join(
        f'<li class="{m.kind.value}"><b>{when(datetime.fromtimestamp(m.at, UTC))}</b> '
        f"{html.escape(m.label)}" + (f": {html.escape(m.reason)}" if m.reason else "") + "</li>"
        for m in timeline.markers
        if m.kind is not MarkerKind.STEP
    )
    steps = ", ".join(
        f"{html.escape(m.label)} at {when(datetime.fromtimestamp(m.at, UTC))}"
        for m in timeline.markers
        if m.kind is MarkerKind.STEP
    )
    legend = "\n".join(
        [
            _legend_item(CANDIDATE_COLOR, "solid", "candidate: its traffic % and metric values"),
            _legend_item(STABLE_COLOR, "solid", "stable: its traffic % and metric values"),
            _legend_item(BOUND_COLORS["max"], "dashed", "max bound (thin: relative to stable)"),
            _legend_item(BOUND_COLORS["min"], "dashed", "min bound (thin: relative to stable)"),
            *(
                _legend_item(color, _css_style(style), _MARKER_MEANING[kind])
                for kind, (color, style) in MARKER_STYLES.items()
            ),
        ]
    )
    return _PAGE.format(
        title=html.escape(title),
        window=f"{when(timeline.window.start)} to {when(timeline.window.end)}",
        rows=rows or '<tr><td colspan="7">no rollout in this window</td></tr>',
        decisions=decisions or "<li>none in this window</li>",
        steps=steps or "none in this window",
        legend=legend,
        svg=inline_svg(render_svg(timeline)),
    )


_MARKER_MEANING: Final = {
    MarkerKind.START: "a canary (or the first revision) starts",
    MarkerKind.STEP: "a step: the candidate's weight changes",
    MarkerKind.PROMOTION: "promotion: the candidate becomes stable",
    MarkerKind.ROLLBACK: "rollback to the last known-good revision",
    MarkerKind.ABORT: "abort: all traffic back to stable",
    MarkerKind.SUPERSEDED: "superseded by a newer spec",
}


def _legend_item(color: str, style: str, text: str) -> str:
    return (
        f'<li><span class="swatch" style="border-top: 3px {style} {color}"></span>'
        f"{html.escape(text)}</li>"
    )


def _css_style(matplotlib_style: str) -> str:
    return {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashed"}.get(
        matplotlib_style, "solid"
    )


_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #212529; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
th, td {{ border: 1px solid #dee2e6; padding: 0.3rem 0.6rem; text-align: left;
  vertical-align: top; font-size: 0.9rem; }}
th {{ background: #f1f3f5; }}
.outcome.Promoted {{ color: #2b8a3e; font-weight: bold; }}
.outcome.RolledBack, .outcome.Aborted {{ color: #c92a2a; font-weight: bold; }}
.legend {{ list-style: none; padding: 0; columns: 2; font-size: 0.9rem; }}
.swatch {{ display: inline-block; width: 2.2rem; margin-right: 0.5rem;
  vertical-align: middle; }}
.figure svg {{ max-width: 100%; height: auto; }}
li.rollback, li.abort {{ color: #c92a2a; }}
li.promotion {{ color: #2b8a3e; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Window: {window} (UTC).</p>
<h2>Rollouts</h2>
<table class="summary">
<thead><tr><th>revision</th><th>version</th><th>outcome</th><th>reason</th>
<th>started</th><th>finished</th><th>took</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<h2>Decisions</h2>
<ul class="decisions">
{decisions}
</ul>
<p>Steps: {steps}.</p>
<h2>Timeline</h2>
<div class="figure">
{svg}
</div>
<h2>Legend</h2>
<ul class="legend">
{legend}
</ul>
</body>
</html>
"""
