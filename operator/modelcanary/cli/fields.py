"""Single fields of a ModelDeployment as the CLI words them: ages, numbers, steps,
bounds, evidence.

Like ``view``, these read the object exactly as the API server returns it
(camelCase keys, any field possibly missing) and never refuse it: a missing
or odd value reads as "-" or None, so a half-written status still shows.
Kept apart from ``view``, which lays these words out in rows and tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def lookup(data: Any, *keys: str | int) -> Any:
    """data["a"]["b"][0], or None as soon as a step is missing."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(data, Sequence) or isinstance(data, str) or key >= len(data):
                return None
        elif not isinstance(data, Mapping):
            return None
        data = data[key] if isinstance(key, int) else data.get(key)
    return data


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """kubectl's way: 45s, 3m, 5h, 2d."""
    when = parse_time(value)
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
    for entry in lookup(md, "status", "history") or ():
        if lookup(entry, "revision") == revision:
            version = lookup(entry, "predictor", "model", "version")
            if version:
                return str(version)
    if lookup(md, "status", "lastKnownGood", "revision") == revision:
        version = lookup(md, "status", "lastKnownGood", "model", "version")
        if version:
            return str(version)
    if lookup(md, "status", "canaryRevision") == revision:
        # The candidate is the spec's predictor until history records it.
        version = lookup(md, "spec", "predictor", "model", "version")
        if version:
            return str(version)
    return None


def revision_text(md: Mapping[str, Any], revision: str | None) -> str:
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
        duration = lookup(step, "pause", "duration")
        return f"pause {duration}" if duration else "pause until resumed"
    return "?"


def current_step(md: Mapping[str, Any]) -> str | None:
    """ "2/4 pause 1m" while a canary runs; None otherwise."""
    if not lookup(md, "status", "canaryRevision"):
        return None
    steps = lookup(md, "spec", "strategy", "steps") or []
    index = lookup(md, "status", "currentStep") or 0
    total = len(steps)
    if lookup(md, "status", "promoteFull"):
        return f"{min(index, total)}/{total} promote --full: going to 100%"
    if index >= total:
        bake = lookup(md, "spec", "strategy", "bake", "duration") or "0s"
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
            label = lookup(metric, "slice", "label")
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


def evidence_text(results: Any) -> str:
    items = []
    for result in results or ():
        stable = lookup(result, "stable")
        against = f" vs stable {number(stable)}" if stable is not None else ""
        items.append(
            f"{lookup(result, 'metric')}={number(lookup(result, 'candidate'))}{against}"
            f" {lookup(result, 'verdict') or ''}".rstrip()
        )
    return "; ".join(items)


def effect(result: Any) -> str:
    """A count metric's odds ratio with its interval, "2.3 [1.5, 5.1]"; "-" otherwise."""
    estimate, low, high = (lookup(result, key) for key in ("effect", "effectLow", "effectHigh"))
    if estimate is None and low is None and high is None:
        return "-"
    shown = number(estimate) if estimate is not None else "?"
    lower = number(low) if low is not None else "0"
    upper = number(high) if high is not None else "inf"
    return f"{shown} [{lower}, {upper}]"


def event_time(event: Mapping[str, Any]) -> Any:
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or lookup(event, "series", "lastObservedTime")
        or event.get("firstTimestamp")
        or lookup(event, "metadata", "creationTimestamp")
    )
