"""From per-canary results to the bench's tables, as plain text and as markdown.

Time to detect is counted from the candidate's first request to the look
(or check, or measurement) that rolls it back. A canary the judge let through
is a miss; medians and 95th percentiles are taken over *all* canaries of a
fault by nearest rank, a miss counting as never, so a p95 of "never" means
more than 5% were missed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.judge_sim.peers import PEERS, Peer
from bench.judge_sim.scenarios import SCENARIOS, CanaryResult
from bench.judge_sim.stats import clopper_pearson, nearest_rank

__all__ = ["Choice", "Table", "markdown", "nearest_rank", "text"]
from bench.judge_sim.world import Schedule


@dataclass
class Table:
    title: str
    header: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def text(table: Table) -> str:
    widths = [len(h) for h in table.header]
    for row in table.rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [table.title, "", line(table.header), line(["-" * w for w in widths])]
    out += [line(row) for row in table.rows]
    out += ["", *table.notes] if table.notes else []
    return "\n".join(out)


def markdown(table: Table, level: int = 3) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"{'#' * level} {table.title}", "", line(table.header)]
    out.append("|" + "|".join("---" for _ in table.header) + "|")
    out += [line(row) for row in table.rows]
    out += ["", *table.notes] if table.notes else []
    return "\n".join(out)


# --------------------------------------------------------------------------- summaries


def rate_cell(k: int, n: int) -> str:
    if n == 0:
        return "n/a"
    low, high = clopper_pearson(k, n)
    return f"{k}/{n} = {100 * k / n:.2f}% [{100 * low:.2f}, {100 * high:.2f}]"


def short_rate(k: int, n: int) -> str:
    return f"{100 * k / n:.2f}% ({k}/{n})" if n else "n/a"


def _seconds(value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return "never"
    return f"{value:.0f}s" if value >= 9.5 else f"{value:.1f}s"


def detection_cell(times: Sequence[float]) -> str:
    """median / p95 over all canaries of a fault, and the share missed when any were."""
    n = len(times)
    if n == 0:
        return "n/a"
    missed = sum(math.isnan(t) for t in times)
    if missed == n:
        return "missed 100%"
    cell = f"{_seconds(nearest_rank(times, 0.5))} / {_seconds(nearest_rank(times, 0.95))}"
    if missed:
        cell += f" (missed {100 * missed / n:.0f}%)"
    return cell


def rollbacks(times: Iterable[float]) -> int:
    return sum(not math.isnan(t) for t in times)


@dataclass(frozen=True)
class Choice:
    peer: Peer
    setting: tuple[float, ...]
    matched: bool
    """False when no setting of the grid got down to the target false-rollback count."""


def tune(peer: Peer, results: Sequence[CanaryResult], allowed: int) -> Choice:
    """The grid setting with the best detection among those within ``allowed`` false
    rollbacks on the null canaries; the least false rollbacks if none is.

    Detection is ranked by the share of harmful canaries caught, then by the mean of
    the per-fault medians (a miss counting as twice the canary). Tuned on the same
    canaries it is then shown on: an advantage for the peer.
    """
    null = [r for r in results if r.scenario == "null" and r.variant == "main"]
    harmful = [s.name for s in SCENARIOS if s.harmful]
    by_fault = {
        name: [r for r in results if r.scenario == name and r.variant == "main"] for name in harmful
    }
    end = Schedule().end
    scored = []
    for i, setting in enumerate(peer.grid):
        false = rollbacks(r.peers[peer.name][i] for r in null)
        caught, medians = [], []
        for runs in by_fault.values():
            times = [float(r.peers[peer.name][i]) for r in runs]
            caught.append(rollbacks(times) / max(1, len(times)))
            median = nearest_rank(times, 0.5)
            medians.append(2 * end if math.isinf(median) or math.isnan(median) else median)
        scored.append((false, -sum(caught) / len(caught), sum(medians) / len(medians), i, setting))
    within = [s for s in scored if s[0] <= allowed]
    if within:
        best = min(within, key=lambda s: (s[1], s[2], s[3]))
        return Choice(peer, best[4], matched=True)
    best = min(scored, key=lambda s: (s[0], s[1], s[2], s[3]))
    return Choice(peer, best[4], matched=False)


def peer_times(results: Sequence[CanaryResult], choice: Choice, scenario: str) -> list[float]:
    index = choice.peer.index(choice.setting)
    return [
        float(r.peers[choice.peer.name][index])
        for r in results
        if r.scenario == scenario and r.variant == "main"
    ]


def ours_times(
    results: Sequence[CanaryResult], scenario: str, variant: str = "main"
) -> list[float]:
    return [r.ours for r in results if r.scenario == scenario and r.variant == variant]


def choices(
    results: Sequence[CanaryResult], targets: Sequence[tuple[str, int]]
) -> list[tuple[str, Choice]]:
    """Per peer: its defaults, then one tuned setting per (label, allowed false rollbacks)."""
    out = []
    for peer in PEERS:
        out.append(("defaults", Choice(peer, peer.default, matched=True)))
        out += [(label, tune(peer, results, allowed)) for label, allowed in targets]
    return out
