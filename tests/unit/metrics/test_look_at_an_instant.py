"""The handler's look at a grid instant (issue 15): its queries and its online check
are evaluated at that instant and shared by every look of the instant, and the
observation is of that instant. A look off the grid is evaluated now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.api.modeldeployment import ModelDeploymentStatus
from modelcanary.reconcile import Reconciler
from tests.unit.metrics.test_batching import FakePrometheus
from tests.unit.rollout.test_count_metrics import counted

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 23, 12, 0, 15, tzinfo=UTC)
NOW = T + timedelta(seconds=3)


class CountingOnline(FakePrometheus):
    def __init__(self) -> None:
        super().__init__({"c1": 3.0, "c2": 4.0, "s": 5.0})
        self.online_checks = 0

    async def is_online(self) -> bool:
        self.online_checks += 1
        return True


def looks(canaries: list[str], at: datetime | None) -> tuple[CountingOnline, list[Any]]:
    prometheus = CountingOnline()

    async def provider(*_: Any) -> CountingOnline:
        return prometheus

    reconciler = Reconciler(None, prometheus=provider)  # type: ignore[arg-type]
    spec = counted("2.0.0")
    status = ModelDeploymentStatus()

    async def every_look() -> list[AnalysisObservation]:
        return [
            await reconciler.looks.observe(
                "ml",
                f"model-{canary}",
                spec,
                status,
                NOW,
                candidate_revision=canary,
                stable_revision="s",
                at=at,
            )
            for canary in canaries
        ]

    return prometheus, asyncio.run(every_look())


def test_looks_at_one_instant_are_of_that_instant_and_share_the_online_check() -> None:
    prometheus, observations = looks(["c1", "c2"], T)
    assert [observation.at for observation in observations] == [T, T]
    assert set(prometheus.instants) == {T}
    assert prometheus.online_checks == 1


def test_a_look_off_the_grid_is_evaluated_now() -> None:
    prometheus, observations = looks(["c1", "c2"], None)
    assert [observation.at for observation in observations] == [NOW, NOW]
    assert set(prometheus.instants) == {None}
    assert prometheus.online_checks == 2
