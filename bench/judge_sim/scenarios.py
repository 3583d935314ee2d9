"""The families of canaries the bench runs, and the one canary a worker simulates.

Every canary is seeded from (seed, family, variant, index) alone, so any one
of them can be re-run by itself and every judge sees the same draw.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from bench.judge_sim import anytime, peers
from bench.judge_sim.world import Floats, Realism, Scenario, Schedule, simulate

NULL = Scenario("null", "null: candidate = stable", harmful=False)
SCENARIOS: tuple[Scenario, ...] = (
    NULL,
    Scenario("errors-20", "errors 20% (stable 0.1%)", True, error_rate=(0.2, 0.2, 0.2)),
    Scenario("errors-1pp", "errors +1 pp (1.1%)", True, error_rate=(0.011, 0.011, 0.011)),
    Scenario("latency-x3", "latency x3", True, latency_factor=3.0),
    Scenario("latency-x1.3", "latency x1.3", True, latency_factor=1.3),
    Scenario("scores+0.1", "scores +0.1", True, score_shift=0.1),
    Scenario("eu-errors-30", "eu only: 30% errors", True, error_rate=(0.001, 0.3, 0.001)),
    Scenario("stall", "machine-wide stalls (both)", False, severe_stalls=True),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Variant:
    """A change to the world or the looks, for the validity stress runs."""

    name: str
    title: str
    realism: Realism = field(default_factory=Realism)
    interval: float = 1.0


MAIN = Variant("main", "all realism, looks every 1 s")
STRESS: tuple[Variant, ...] = (
    Variant(
        "no-offsets",
        "no scrape offsets (both revisions scraped together)",
        Realism(scrape_offsets=False),
    ),
    Variant("no-hiccups", "no per-process hiccups", Realism(hiccups=False)),
    Variant("hiccups-long", "hiccups 4x as long (median 100 ms)", Realism(hiccup_median=0.1)),
    Variant("looks-2s", "looks every 2 s (twice the scrape interval)", interval=2.0),
    Variant("looks-15s", "looks every 15 s (the operator's default interval)", interval=15.0),
    Variant(
        "iid",
        "none of it: no stalls, hiccups, scrape offsets or load changes",
        Realism(stalls=False, hiccups=False, scrape_offsets=False, varying_load=False),
    ),
    # Last, so that adding it left the other variants' seeds (by position) as they were.
    Variant(
        "looks-0.25s",
        "looks every 0.25 s (as while the evidence leans against the candidate)",
        interval=0.25,
    ),
)
VARIANTS = {v.name: v for v in (MAIN, *STRESS)}


@dataclass(frozen=True)
class Task:
    scenario: str
    variant: str
    index: int
    seed: int
    alpha: float
    peers: bool


@dataclass(frozen=True)
class CanaryResult:
    scenario: str
    variant: str
    index: int
    rate: float
    """The canary's base load (rps, both revisions)."""
    ours: float
    """When the sequential judge rolled back (s after the first candidate request; NaN: never)."""
    ours_metrics: dict[str, float]
    peers: dict[str, Floats]
    judge_seconds: float
    looks: int


def rng_for(task: Task) -> np.random.Generator:
    family = [s.name for s in SCENARIOS].index(task.scenario)
    variant = list(VARIANTS).index(task.variant)
    sequence = np.random.SeedSequence(task.seed, spawn_key=(family, variant, task.index))
    return np.random.default_rng(sequence)


def run(task: Task) -> CanaryResult:
    """One canary: simulate it, run the sequential judge, then every peer's grid."""
    scenario = BY_NAME[task.scenario]
    variant = VARIANTS[task.variant]
    schedule = Schedule()
    counters = simulate(
        rng_for(task),
        scenario,
        schedule=schedule,
        realism=variant.realism,
        interval=variant.interval,
    )
    started = time.perf_counter()
    outcome = anytime.run(counters, task.alpha, all_metrics=not scenario.harmful, schedule=schedule)
    spent = time.perf_counter() - started
    return CanaryResult(
        scenario=task.scenario,
        variant=task.variant,
        index=task.index,
        rate=counters.rate,
        ours=math.nan if outcome.rollback_at is None else outcome.rollback_at,
        ours_metrics=outcome.failed_at,
        peers=peers.evaluate(counters, schedule) if task.peers else {},
        judge_seconds=spent,
        looks=outcome.looks,
    )
