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


def _get(data: Any, *keys: str | int) -> Any:
    """data["a"]["b"][0], or None as soon as a step is missing."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(data, Sequence) or isinstance(data, str) or key >= len(data):
                return None
        elif not isinstance(data, Mapping):
            return None
        data = data[key] if isinstance(key, int) else data.get(key)
    return data


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """kubectl's way: 45s, 3m, 5h, 2d."""
    when = _parse_time(value)
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.4g}"


def model_version(md: Mapping[str, Any], revision: str | None) -> str | None:
    """The model version a revision serves, from wherever the object records it."""
    if not revision:
        return None
    for entry in _get(md, "status", "history") or ():
        if _get(entry, "revision") == revision:
            version = _get(entry, "predictor", "model", "version")
            if version:
                return str(version)
    if _get(md, "status", "lastKnownGood", "revision") == revision:
        version = _get(md, "status", "lastKnownGood", "model", "version")
        if version:
            return str(version)
    if _get(md, "status", "canaryRevision") == revision:
        # The candidate is the spec's predictor until history records it.
        version = _get(md, "spec", "predictor", "model", "version")
        if version:
            return str(version)
    return None


def _revision(md: Mapping[str, Any], revision: str | None) -> str:
    if not revision:
        return "-"
    version = model_version(md, revision)
    return f"{revision} (model {version})" if version else revision


def step_description(step: Any) -> str:
    if not isinstance(step, Mapping):
        return "?"
    if step.get("setWeight") is not None:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        duration = _get(step, "pause", "duration")
        return f"pause {duration}" if duration else "pause until resumed"
    return "?"


def current_step(md: Mapping[str, Any]) -> str | None:
    """ "2/4 pause 1m" while a canary runs; None otherwise."""
    if not _get(md, "status", "canaryRevision"):
        return None
    steps = _get(md, "spec", "strategy", "steps") or []
    index = _get(md, "status", "currentStep") or 0
    total = len(steps)
    if _get(md, "status", "promoteFull"):
        return f"{min(index, total)}/{total} promote --full: going to 100%"
    if index >= total:
        bake = _get(md, "spec", "strategy", "bake", "duration") or "0s"
        return f"{total}/{total} done, baking at 100% for {bake}"
    return f"{index + 1}/{total} {step_description(steps[index])}"


_COUNT_KINDS = {"errors": "errors", "latency": "slower", "distribution": "shifted"}


def bounds(metric: Any) -> str:
    """A metric's bounds as read in the spec: "<= 0.5, <= 1.2x stable", or for a count
    metric what it tests: "not slower than stable (+10%), per segment"."""
    if not isinstance(metric, Mapping):
        return "-"
    for kind, word in _COUNT_KINDS.items():
        block = metric.get(kind)
        if isinstance(block, Mapping):
            tolerance = block.get("tolerance")
            text = f"{word} vs stable"
            if tolerance:
                text += f" (+{number(tolerance * 100)}% odds)"
            label = _get(metric, "slice", "label")
            return f"{text}, per {label}" if label else text
    parts = []
    if metric.get("min") is not None:
        parts.append(f">= {number(metric['min'])}")
    if metric.get("max") is not None:
        parts.append(f"<= {number(metric['max'])}")
    if metric.get("minRelativeToStable") is not None:
        parts.append(f">= {number(metric['minRelativeToStable'])}x stable")
    if metric.get("maxRelativeToStable") is not None:
        parts.append(f"<= {number(metric['maxRelativeToStable'])}x stable")
    return ", ".join(parts) or "-"


def _evidence(results: Any) -> str:
    items = []
    for result in results or ():
        stable = _get(result, "stable")
        against = f" vs stable {number(stable)}" if stable is not None else ""
        items.append(
            f"{_get(result, 'metric')}={number(_get(result, 'candidate'))}{against}"
            f" {_get(result, 'verdict') or ''}".rstrip()
        )
    return "; ".join(items)


def _summary_rows(md: Mapping[str, Any], now: datetime) -> list[_Row]:
    status = _get(md, "status")
    if not isinstance(status, Mapping):
        status = {}
    phase = str(status.get("phase") or "Pending")
    rows = [
        _Row("Name", str(_get(md, "metadata", "name") or "-")),
        _Row("Namespace", str(_get(md, "metadata", "namespace") or "-")),
        _Row("Phase", phase, _PHASE_STYLES.get(phase, "bold")),
    ]
    if status.get("message"):
        rows.append(_Row("Message", str(status["message"])))
    canary = status.get("canaryRevision")
    weight = status.get("canaryWeight") or 0
    stable = status.get("stableRevision")
    rows.append(_Row("Stable", f"{_revision(md, stable)}  weight {100 - weight}%"))
    if canary:
        rows.append(_Row("Canary", f"{_revision(md, canary)}  weight {weight}%", "cyan"))
        step = current_step(md)
        if step:
            paused = "  (paused)" if status.get("paused") else ""
            rows.append(_Row("Step", f"{step}{paused}", "yellow" if paused else ""))
    elif _get(md, "spec", "predictor", "model", "version"):
        rows.append(_Row("Desired", f"model {_get(md, 'spec', 'predictor', 'model', 'version')}"))
    if status.get("restoring"):
        rows.append(_Row("Restoring", _revision(md, status["restoring"]), "yellow"))
    if status.get("previousRevision"):
        # strategy.scaleDownDelay: a rollback to it now meets Ready pods.
        rows.append(_Row("Warm", _warm(md, status, now)))
    rows += _analysis_rows(status, now)
    rows += _known_good_rows(md, status, now)
    rows += _drill_rows(status, now)
    rows += _action_rows(status, now)
    return rows


def _warm(md: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> str:
    when = _parse_time(status.get("scaleDownAt"))
    left = f"  scaled to zero in {max(0, int((when - now).total_seconds()))}s" if when else ""
    return f"{_revision(md, status['previousRevision'])}{left}"


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
                f"{_revision(md, known_good.get('revision'))}, promoted {promoted} ago",
                "green",
            )
        )
        evidence = _evidence(known_good.get("evidence"))
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
    results = _get(md, "status", "analysis", "results") or []
    if not results:
        return None
    specs = {
        _get(metric, "name"): metric for metric in _get(md, "spec", "analysis", "metrics") or ()
    }
    section = _Section(
        "Metrics",
        ("METRIC", "CANDIDATE", "STABLE", "BOUND", "EFFECT", "VERDICT", "MESSAGE"),
        style_column=5,
    )
    for result in results:
        name = str(_get(result, "metric") or "?")
        section.rows.append(
            (
                name,
                number(_get(result, "candidate")),
                number(_get(result, "stable")),
                bounds(specs.get(name)),
                effect(result),
                str(_get(result, "verdict") or "-"),
                str(_get(result, "message") or ""),
            )
        )
    return section


def effect(result: Any) -> str:
    """A count metric's odds ratio with its interval, "2.3 [1.5, 5.1]"; "-" otherwise."""
    estimate, low, high = (_get(result, key) for key in ("effect", "effectLow", "effectHigh"))
    if estimate is None and low is None and high is None:
        return "-"
    shown = number(estimate) if estimate is not None else "?"
    lower = number(low) if low is not None else "0"
    upper = number(high) if high is not None else "inf"
    return f"{shown} [{lower}, {upper}]"


def _event_time(event: Mapping[str, Any]) -> Any:
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or _get(event, "series", "lastObservedTime")
        or event.get("firstTimestamp")
        or _get(event, "metadata", "creationTimestamp")
    )


def _events_section(events: Sequence[Mapping[str, Any]], now: datetime) -> _Section | None:
    if not events:
        return None
    oldest_first = sorted(
        events, key=lambda e: _parse_time(_event_time(e)) or datetime.min.replace(tzinfo=UTC)
    )
    section = _Section("Events", ("TYPE", "REASON", "AGE", "MESSAGE"), style_column=0)
    for event in oldest_first[-RECENT_EVENTS:]:
        count = event.get("count") or 1
        seen = age(_event_time(event), now) + (f" (x{count})" if count > 1 else "")
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
