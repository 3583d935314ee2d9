"""What the report's picture, its page and its command share: errors and the palette."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from modelcanary.cli.timeline import MarkerKind

INSTALL_HINT: Final = "pip install 'modelcanary[report]'"

CANDIDATE_COLOR: Final = "#d95f02"
STABLE_COLOR: Final = "#1b6ca8"
MARKER_STYLES: Final[dict[MarkerKind, tuple[str, str]]] = {
    MarkerKind.START: ("#2b8a3e", "-."),
    MarkerKind.STEP: ("#868e96", ":"),
    MarkerKind.PROMOTION: ("#2b8a3e", "-"),
    MarkerKind.ROLLBACK: ("#c92a2a", "-"),
    MarkerKind.ABORT: ("#e67700", "-"),
    MarkerKind.SUPERSEDED: ("#868e96", "--"),
}
BOUND_COLORS: Final = {"max": "#c92a2a", "min": "#7048e8"}


class ReportError(Exception):
    """Something the user can fix; the message says what."""


class MissingExtra(ReportError):
    """matplotlib is not installed."""


def matplotlib_or_hint() -> Any:
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise MissingExtra(f"drawing the report needs matplotlib: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    return matplotlib


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return ""
    seconds = max(0.0, (end - start).total_seconds())
    minutes, rest = divmod(math.floor(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.0f}s"
