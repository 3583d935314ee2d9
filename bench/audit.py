"""A controller's requests, read from the API server's audit log.

The control plane logs every request's metadata once it is answered
(``e2e.harness.kubernetes``: level Metadata, stage ResponseComplete), one
JSON line each, with the requesting user. Each controller in a scale bench
runs under a user of its own, so its requests are the lines with that user;
nothing in the controller is instrumented for it. A watch is logged when it
ends, with the time it was opened.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Request:
    at: float
    """When the API server received it, Unix seconds."""
    kind: str
    """``verb resource[/subresource]``, e.g. ``patch modeldeployments/status``."""


def parse_line(line: bytes | str, user: str) -> Request | None:
    """``line``'s request if ``user`` made it, else None."""
    event = json.loads(line)
    if event.get("user", {}).get("username") != user:
        return None
    ref = event.get("objectRef") or {}
    what = ref.get("resource", event.get("requestURI", "?"))
    if ref.get("subresource"):
        what += "/" + ref["subresource"]
    stamp = event.get("requestReceivedTimestamp") or event.get("stageTimestamp")
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    return Request(at, f"{event.get('verb', '?')} {what}")


def by_kind(requests: Iterable[Request]) -> Counter[str]:
    return Counter(request.kind for request in requests)


def peak_per_second(times: Iterable[float], start: float, end: float) -> tuple[int, float]:
    """The most requests in one whole second (``floor`` of the Unix time) within
    ``[start, end]``, and that second; ``(0, start)`` if there were none."""
    buckets = Counter(int(at) for at in times if start <= at <= end)
    if not buckets:
        return 0, start
    second, count = max(buckets.items(), key=lambda item: (item[1], -item[0]))
    return count, float(second)


def per_minute(counts: Counter[str], seconds: float) -> dict[str, float]:
    """Counts over ``seconds`` as requests per minute, busiest first."""
    minutes = seconds / 60
    return {kind: round(count / minutes, 1) for kind, count in counts.most_common()}


class AuditTail:
    """One user's requests in the audit log, read on from where we left off."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user
        self.offset = 0

    def take_requests(self) -> list[Request]:
        """The user's requests logged since the last call, oldest first."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        found = (parse_line(line, self.user) for line in chunk[:end].splitlines())
        return [request for request in found if request is not None]

    def take(self) -> Counter[str]:
        """Requests since the last call, counted by ``verb resource[/subresource]``."""
        return by_kind(self.take_requests())
