"""What ``modelcanary status`` shows: a ModelDeployment at a glance.

Pure functions on the object exactly as the API server returns it (camelCase
keys, any field possibly missing), so that the CLI, ``make demo`` and tests
render the same view from a dict, with no cluster and no parsing that could
refuse a half-written status. One description of the view (key/value rows and
tables) is rendered twice: with rich styles for a terminal, and as plain text
with no ANSI escapes for pipes, logs and tests.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from modelcanary.cli.fields import (
    age,
    bounds,
    current_step,
    effect,
    event_time,
    evidence_text,
    lookup,
    number,
    parse_time,
    revision_text,
)

RECENT_EVENTS = 8
# Wide enough that a plain block rarely wraps a message mid-line, so that it
# stays greppable in logs.
PLAIN_WIDTH = 200

_PHASE_STYLES = {
    "Healthy": "bold green",
    "Progressing": "bold cyan",
    "Baking": "bold cyan",
    "Paused": "bold yellow",
    "Pending": "bold",
    "RolledBack": "bold red",
    "Failed": "bold red",
    "Invalid": "bold red",
}
_VERDICT_STYLES = {
    "Pass": "green",
    "Fail": "bold red",
    "NoData": "yellow",
    "Error": "red",
    "Outage": "yellow",
}


@dataclass
class _Row:
    key: str
    value: str
    style: str = ""


@dataclass
class _Section:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    # Index of the column whose value picks the row's style (a verdict, an event type).
    style_column: int | None = None


def _summary_rows(md: Mapping[str, Any], now: datetime) -> list[_Row]:
    status = lookup(md, "status")
    if not isinstance(status, Mapping):
        status = {}
    phase = str(status.get("phase") or "Pending")
    rows = [
        _Row("Name", str(lookup(md, "metadata", "name") or "-")),
        _Row("Namespace", str(lookup(md, "metadata", "namespace") or "-")),
        _Row("Phase", phase, _PHASE_STYLES.get(phase, "bold")),
    ]
    if status.get("message"):
        rows.append(_Row("Message", str(status["message"])))
    canary = status.get("canaryRevision")
    weight = status.get("canaryWeight") or 0
    stable = status.get("stableRevision")
    rows.append(_Row("Stable", f"{revision_text(md, stable)}  weight {100 - weight}%"))
    if canary:
        rows.append(_Row("Canary", f"{revision_text(md, canary)}  weight {weight}%", "cyan"))
        step = current_step(md)
        if step:
            paused = "  (paused)" if status.get("paused") else ""
            rows.append(_Row("Step", f"{step}{paused}", "yellow" if paused else ""))
    elif lookup(md, "spec", "predictor", "model", "version"):
        rows.append(_Row("Desired", f"model {lookup(md, 'spec', 'predictor', 'model', 'version')}"))
    if status.get("restoring"):
        rows.append(_Row("Restoring", revision_text(md, status["restoring"]), "yellow"))
    if status.get("previousRevision"):
        # strategy.scaleDownDelay: a rollback to it now meets Ready pods.
        rows.append(_Row("Warm", _warm(md, status, now)))
    rows += _analysis_rows(status, now)
    rows += _known_good_rows(md, status, now)
    rows += _drill_rows(status, now)
    rows += _action_rows(status, now)
    return rows


def _warm(md: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> str:
    when = parse_time(status.get("scaleDownAt"))
    left = f"  scaled to zero in {max(0, int((when - now).total_seconds()))}s" if when else ""
    return f"{revision_text(md, status['previousRevision'])}{left}"


def _analysis_rows(status: Mapping[str, Any], now: datetime) -> list[_Row]:
    rows: list[_Row] = []
    analysis = status.get("analysis")
    if isinstance(analysis, Mapping) and (analysis.get("outcome") or analysis.get("evaluations")):
        outcome = analysis.get("outcome") or "-"
        detail = f" - {analysis['reason']}" if analysis.get("reason") else ""
        counts = (
            f"  ({analysis.get('evaluations') or 0} evaluations,"
            f" {analysis.get('failures') or 0} failed, last {age(analysis.get('lastRunAt'), now)}"
            " ago)"
        )
        rows.append(
            _Row("Analysis", f"{outcome}{detail}{counts}", _VERDICT_STYLES.get(outcome, ""))
        )
    return rows


def _known_good_rows(md: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> list[_Row]:
    rows: list[_Row] = []
    known_good = status.get("lastKnownGood")
    if isinstance(known_good, Mapping):
        promoted = age(known_good.get("promotedAt"), now)
        rows.append(
            _Row(
                "Last known-good",
                f"{revision_text(md, known_good.get('revision'))}, promoted {promoted} ago",
                "green",
            )
        )
        evidence = evidence_text(known_good.get("evidence"))
        note = known_good.get("note") or ""
        if evidence or note:
            rows.append(_Row("  evidence", "; ".join(x for x in (evidence, note) if x)))
    return rows


def _drill_rows(status: Mapping[str, Any], now: datetime) -> list[_Row]:
    rows: list[_Row] = []
    drill = status.get("lastDrill")
    if isinstance(drill, Mapping):
        succeeded = drill.get("succeeded")
        text = f"{drill.get('mode') or '?'} {'succeeded' if succeeded else 'failed'}"
        if drill.get("timeToRestoreSeconds") is not None:
            text += f", restored in {number(drill['timeToRestoreSeconds'])}s"
        elif drill.get("timeToReadySeconds") is not None:
            text += f", ready in {number(drill['timeToReadySeconds'])}s"
        text += f", {age(drill.get('finishedAt') or drill.get('startedAt'), now)} ago"
        if drill.get("reason"):
            text += f" - {drill['reason']}"
        rows.append(_Row("Last drill", text, "green" if succeeded else "red"))
    return rows


def _action_rows(status: Mapping[str, Any], now: datetime) -> list[_Row]:
    rows: list[_Row] = []
    action = status.get("lastAction")
    if isinstance(action, Mapping):
        name = str(action.get("action") or "?")
        if action.get("revision"):
            name += f" {action['revision']}"
        verdict = "accepted" if action.get("accepted") else "refused"
        text = f"{name}: {verdict}, {age(action.get('at'), now)} ago"
        if action.get("message"):
            text += f" - {action['message']}"
        rows.append(_Row("Last action", text, "" if action.get("accepted") else "yellow"))
    return rows


def _metrics_section(md: Mapping[str, Any]) -> _Section | None:
    results = lookup(md, "status", "analysis", "results") or []
    if not results:
        return None
    specs = {
        lookup(metric, "name"): metric for metric in lookup(md, "spec", "analysis", "metrics") or ()
    }
    section = _Section(
        "Metrics",
        ("METRIC", "CANDIDATE", "STABLE", "BOUND", "EFFECT", "VERDICT", "MESSAGE"),
        style_column=5,
    )
    for result in results:
        name = str(lookup(result, "metric") or "?")
        section.rows.append(
            (
                name,
                number(lookup(result, "candidate")),
                number(lookup(result, "stable")),
                bounds(specs.get(name)),
                effect(result),
                str(lookup(result, "verdict") or "-"),
                str(lookup(result, "message") or ""),
            )
        )
    return section


def _events_section(events: Sequence[Mapping[str, Any]], now: datetime) -> _Section | None:
    if not events:
        return None
    oldest_first = sorted(
        events, key=lambda e: parse_time(event_time(e)) or datetime.min.replace(tzinfo=UTC)
    )
    section = _Section("Events", ("TYPE", "REASON", "AGE", "MESSAGE"), style_column=0)
    for event in oldest_first[-RECENT_EVENTS:]:
        count = event.get("count") or 1
        seen = age(event_time(event), now) + (f" (x{count})" if count > 1 else "")
        section.rows.append(
            (
                str(event.get("type") or "-"),
                str(event.get("reason") or "-"),
                seen,
                str(event.get("message") or ""),
            )
        )
    return section


def _describe(
    md: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime | None
) -> tuple[list[_Row], list[_Section]]:
    moment = now or datetime.now(UTC)
    sections = [
        section
        for section in (_metrics_section(md), _events_section(events, moment))
        if section is not None
    ]
    return _summary_rows(md, moment), sections


def _row_style(section: _Section, row: tuple[str, ...]) -> str:
    if section.style_column is None:
        return ""
    value = row[section.style_column]
    return _VERDICT_STYLES.get(value, "") or ("yellow" if value == "Warning" else "")


def status_renderable(
    md: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    now: datetime | None = None,
) -> RenderableType:
    """The status view for a terminal (rich), e.g. inside ``rich.live.Live``."""
    rows, sections = _describe(md, events, now)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for row in rows:
        summary.add_row(row.key, Text(row.value, style=row.style))
    parts: list[RenderableType] = [summary]
    for section in sections:
        table = Table(
            title=section.title,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for column in section.columns:
            table.add_column(column, overflow="fold")
        for values in section.rows:
            table.add_row(*values, style=_row_style(section, values))
        parts.append(table)
    return Group(*parts)


def status_lines(
    md: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    now: datetime | None = None,
) -> list[str]:
    """The same view as plain text lines, with no ANSI escapes."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=PLAIN_WIDTH,
        color_system=None,
        force_terminal=False,
        no_color=True,
        highlight=False,
        emoji=False,
    )
    console.print(status_renderable(md, events, now=now))
    return [line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines()]
