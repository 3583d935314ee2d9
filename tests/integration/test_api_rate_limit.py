"""The client-side API rate limit against the real kube-apiserver, wired as the
operator wires it: ``handlers.configure`` builds the kr8s client the
reconciler, the drill executor and every edge share, and limits it.

N requests at once through a client limited to qps=Q, burst=B must all
succeed and take at least (N - B) / Q seconds (B go at once, then one every
1/Q s), and each one is counted in the wait histogram. The same requests
through the unlimited client (``--no-api-rate-limit``) finish faster than
that bound, so the bound is the limit's doing. If a kr8s upgrade moved where
it builds its HTTP client, the hook would not be on it and this test fails.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import kopf
import kr8s
import kr8s.asyncio
import pytest
from kr8s.asyncio.objects import ConfigMap

from modelcanary import handlers, telemetry

pytestmark = pytest.mark.integration

N, QPS, BURST = 60, 20.0, 10
FLOOR = (N - BURST) / QPS  # 2.5 s


def _sample(name: str) -> float:
    return telemetry.REGISTRY.get_sample_value(name) or 0.0


def _burst_of_creates(
    kubeconfig: Path,
    namespace: str,
    limit: tuple[float, int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[float, float, float, int]:
    """Configure the operator's client with ``limit``, create N ConfigMaps at once.

    Returns the seconds they took, the increase of the wait histogram's count
    less the requests the client sent (so 0 when each was counted once, minus
    their number when none was), the increase of its sum, and how many
    ConfigMaps the namespace then holds.
    """
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    prefix = "limited" if limit else "unlimited"

    async def main() -> tuple[float, float, float, int]:
        memo = kopf.Memo(api_rate_limit=limit, metrics_port=0)
        # kopf types the decorated handler as its callback protocol; it is the function.
        configure: Any = handlers.configure
        await configure(settings=kopf.OperatorSettings(), memo=memo)
        api: kr8s.asyncio.Api = memo.reconciler.api
        # An independent count of what the client sent: every response it got.
        assert api._session is not None
        sent = 0

        async def count(response: httpx.Response) -> None:
            nonlocal sent
            sent += 1

        api._session.event_hooks["response"].append(count)
        count0 = _sample("modelcanary_api_rate_limit_wait_seconds_count")
        sum0 = _sample("modelcanary_api_rate_limit_wait_seconds_sum")

        async def create(k: int) -> Any:
            body = {"metadata": {"name": f"{prefix}-{k}", "namespace": namespace}}
            cm = ConfigMap(body, api=api)
            await cm.create()
            return cm.metadata.uid

        start = time.monotonic()
        uids = await asyncio.gather(*(create(k) for k in range(N)))
        elapsed = time.monotonic() - start
        assert all(uids), "every create succeeded and has a uid"
        made = [
            cm
            async for cm in ConfigMap.list(namespace=namespace, api=api)
            if isinstance(cm, ConfigMap) and cm.name.startswith(prefix)
        ]
        waited = _sample("modelcanary_api_rate_limit_wait_seconds_count") - count0
        wait_sum = _sample("modelcanary_api_rate_limit_wait_seconds_sum") - sum0
        if api._session is not None:
            await api._session.aclose()
        return elapsed, waited - sent, wait_sum, len(made)

    try:
        return asyncio.run(main())
    finally:
        # kr8s caches clients per thread and event-loop id; a later loop may
        # reuse this one's id, and must not be handed this test's client.
        kr8s.asyncio.Api._instances.clear()


def test_n_requests_through_the_limited_client_take_at_least_n_minus_burst_over_qps(
    kubeconfig: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elapsed, counted, wait_sum, made = _burst_of_creates(
        kubeconfig, namespace, (QPS, BURST), monkeypatch
    )
    print(f"{N} creates at qps={QPS:g} burst={BURST}: {elapsed:.2f} s (floor {FLOOR:.2f} s)")
    assert made == N
    assert elapsed >= FLOOR - 0.01
    assert elapsed < FLOOR * 1.5 + 2.0, "the limit should not hold requests much beyond its rate"
    # Every request the client sent waited for the limiter once and was counted.
    assert counted == 0
    # The waits add up to about sum over k > B of (k - B) / Q.
    assert wait_sum >= 0.9 * sum((k - BURST) / QPS for k in range(BURST + 1, N + 1))
    assert telemetry.REGISTRY.get_sample_value("modelcanary_api_rate_limit_qps") == QPS


def test_the_same_requests_without_the_limit_beat_the_floor_and_are_not_counted(
    kubeconfig: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elapsed, uncounted, _wait_sum, made = _burst_of_creates(
        kubeconfig, namespace, None, monkeypatch
    )
    print(f"{N} creates without a limit: {elapsed:.2f} s")
    assert made == N
    assert uncounted <= -(N + 1)  # the client sent them all and none went through the limiter
    assert elapsed < FLOOR
