"""Which stretch of time the report draws, and at what resolution.

The window follows the rollout asked for (or the latest): its canary's start to
its end, padded a little, unless ``--since``/``--until`` say otherwise. Pure, as
the rest of the timeline: the command fetches, this chooses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modelcanary.api.base import parse_duration
from modelcanary.api.modeldeployment import HistoryEntry

MIN_PADDING = timedelta(seconds=15)
MAX_PADDING = timedelta(minutes=10)
PADDING_FRACTION = 0.1
TARGET_POINTS = 400
"""Range-query points per series by default: smooth enough, far below Prometheus's 11,000."""


class WindowError(ValueError):
    """The window asked for cannot be made (unknown revision, bad time, empty range)."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start <= self.end and end >= self.start

    def grid_start(self, step: float) -> datetime:
        """Where a range query of ``step`` must begin to cover the window and end on it.

        Prometheus evaluates a range at start, start + step, ... up to end. Counted
        from the window's start, the last point can fall up to a step before its
        end, and a sample scraped in that gap (the failing value of a rollback
        that just happened) is never drawn. Counted back from the end, it is.
        """
        steps = math.ceil(self.seconds / step - 1e-9)
        return self.end - timedelta(seconds=steps * step)

    def query_range(self, step: float) -> tuple[str, str]:
        """The ``start`` and ``end`` parameters of that range query, in milliseconds.

        Prometheus keeps milliseconds. The end is rounded down, never up: a
        last point rounded past the window's end is clipped from the picture,
        and it is the one that carries a rollback's failing value. The start
        keeps a whole number of steps before that end.
        """
        end_ms = math.floor(self.end.timestamp() * 1000)
        span_ms = round((self.end - self.grid_start(step)).total_seconds() * 1000)
        return f"{(end_ms - span_ms) / 1000:.3f}", f"{end_ms / 1000:.3f}"


def readable_history(md: Mapping[str, Any]) -> list[HistoryEntry]:
    """The readable history entries, oldest first (the status keeps them newest first)."""
    status = md.get("status") or {}
    parsed: list[HistoryEntry] = []
    for raw in status.get("history") or []:
        try:
            parsed.append(HistoryEntry.model_validate(raw))
        except ValidationError:
            continue  # an entry this version cannot read is left out of the picture
    return sorted(parsed, key=lambda entry: entry.created_at)


def parse_moment(text: str, now: datetime) -> datetime:
    """An RFC 3339 time, or a duration such as ``30m`` meaning that long before ``now``."""
    text = text.strip()
    if re.fullmatch(r"[0-9.]+(ms|s|m|h)([0-9.]+(ms|s|m|h))*", text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WindowError(
            f"{text!r} is neither an RFC 3339 time (2026-11-23T22:00:00Z) nor a duration (30m, 2h)"
        ) from None
    if moment.tzinfo is None:
        raise WindowError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return moment.astimezone(UTC)


def padding_for(start: datetime, end: datetime) -> timedelta:
    """A little room either side, so the first step and the last decision are not on the edge."""
    padding = (end - start) * PADDING_FRACTION
    return max(MIN_PADDING, min(MAX_PADDING, padding))


def choose_window(
    md: Mapping[str, Any],
    *,
    now: datetime,
    revision: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Window:
    """The time range to draw.

    ``since``/``until`` win; a side left out comes from the rollout (``until``
    defaults to now). Otherwise the rollout of ``revision`` (a prefix is
    enough when it is unambiguous), else the latest one: its canary's start
    to its end, or to now while it runs, padded a little.
    """
    entries = readable_history(md)
    entry = _pick_entry(entries, revision)
    if entry is not None:
        rollout_start = entry.created_at
        rollout_end = entry.finished_at or now
        padding = padding_for(rollout_start, rollout_end)
        default_start = rollout_start - padding
        default_end = min(now, rollout_end + padding) if entry.finished_at else now
    elif since is None:
        raise WindowError(
            "the ModelDeployment has no rollout in status.history yet: "
            "give --since to pick a window"
        )
    else:
        default_start, default_end = now, now
    start = parse_moment(since, now) if since is not None else default_start
    end = parse_moment(until, now) if until is not None else (now if since else default_end)
    if end <= start:
        raise WindowError(f"the window is empty: {iso(start)} is not before {iso(end)}")
    return Window(start, end)


def _pick_entry(entries: Sequence[HistoryEntry], revision: str | None) -> HistoryEntry | None:
    if revision is None:
        return entries[-1] if entries else None
    exact = [entry for entry in entries if entry.revision == revision]
    matches = exact or [entry for entry in entries if entry.revision.startswith(revision)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(entry.revision for entry in reversed(entries)) or "none"
    if not matches:
        raise WindowError(f"revision {revision} is not in status.history (known: {known})")
    raise WindowError(f"revision {revision} is ambiguous: it starts {known}")


def default_step(window: Window) -> float:
    """Query resolution: about TARGET_POINTS points, never finer than a second."""
    return float(max(1, math.ceil(window.seconds / TARGET_POINTS)))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
