"""A RollbackDrill's loop in sharded mode: passes until finished, a failed pass retried,
nothing when the shard is not owned."""

from __future__ import annotations

import asyncio

import kr8s
import pytest

from modelcanary.dispatch.drill_loop import DrillWork, run_drill
from modelcanary.dispatch.loops import ROLLBACK_DRILL, ObjectKey, ObjectLoop

pytestmark = pytest.mark.unit


def run(delays: list[float | Exception | None], *, owned: bool = True) -> list[str]:
    passes: list[str] = []

    async def one_pass(namespace: str, name: str) -> float | None:
        passes.append(f"{namespace}/{name}")
        outcome = delays.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    loop = ObjectLoop(ObjectKey(ROLLBACK_DRILL, "ns", "d"), ("ns", "m"), lambda _ns, _n: owned)
    work = DrillWork(one_pass=one_pass, retry_seconds=0.0)
    asyncio.run(asyncio.wait_for(run_drill(loop, work), timeout=5.0))
    return passes


def test_a_drill_runs_passes_until_finished_and_retries_a_failed_one() -> None:
    assert run([0.0, kr8s.ServerError("a 500"), 0.0, None]) == ["ns/d"] * 4


def test_a_drill_whose_shard_is_not_owned_gets_no_pass() -> None:
    assert run([], owned=False) == []
