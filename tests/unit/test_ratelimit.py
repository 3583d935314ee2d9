"""The client-side API rate limit: a token bucket (driven by a fake clock), its
asyncio waiter, its httpx hook, and the ``run`` flags that set it."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcanary import __main__ as cli_main
from modelcanary.ratelimit import (
    DEFAULT_BURST,
    DEFAULT_QPS,
    RateLimiter,
    TokenBucket,
    limit_api,
)

pytestmark = pytest.mark.unit


def grant_times(bucket: TokenBucket, arrivals: list[float]) -> list[float]:
    """When each request (arriving at the given times, in order) may go."""
    return [now + bucket.reserve(now) for now in arrivals]


# --------------------------------------------------------------------------- the bucket


def test_a_full_bucket_lets_burst_go_at_once_then_one_per_period() -> None:
    bucket = TokenBucket(qps=10, burst=5, now=0.0)
    granted = grant_times(bucket, [0.0] * 12)
    assert granted[:5] == [0.0] * 5
    assert granted[5:] == pytest.approx([0.1 * k for k in range(1, 8)])


def test_tokens_refill_at_qps_up_to_burst_only() -> None:
    bucket = TokenBucket(qps=2, burst=3, now=0.0)
    assert grant_times(bucket, [0.0] * 3) == [0.0] * 3
    # 1 s later two tokens came back: two go now, the third waits half a second.
    assert grant_times(bucket, [1.0] * 3) == pytest.approx([1.0, 1.0, 1.5])
    # A long idle time refills to burst, never beyond.
    assert grant_times(bucket, [100.0] * 4) == pytest.approx([100.0, 100.0, 100.0, 100.5])


def test_steady_arrivals_under_the_rate_never_wait() -> None:
    bucket = TokenBucket(qps=10, burst=1, now=0.0)
    arrivals = [0.1 * k for k in range(100)]
    assert grant_times(bucket, arrivals) == pytest.approx(arrivals)


def test_waiters_are_served_in_the_order_they_arrived() -> None:
    bucket = TokenBucket(qps=4, burst=2, now=0.0)
    granted = grant_times(bucket, [0.0, 0.0, 0.0, 0.01, 0.02, 0.3, 0.3])
    assert granted == sorted(granted)
    waiting = granted[2:]
    assert all(b > a for a, b in itertools.pairwise(waiting))


def test_a_clock_that_steps_back_adds_no_tokens() -> None:
    bucket = TokenBucket(qps=1, burst=1, now=10.0)
    assert bucket.reserve(10.0) == 0.0
    assert bucket.reserve(5.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("qps", "burst"), [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, -5)]
)
def test_a_bucket_refuses_a_rate_or_burst_that_is_not_positive(qps: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"qps|burst"):
        TokenBucket(qps=qps, burst=burst, now=0.0)


@settings(max_examples=200, deadline=None)
@given(
    qps=st.floats(min_value=0.5, max_value=500),
    burst=st.integers(min_value=1, max_value=50),
    # Floods (no gap), a trickle, and idle spells long enough to refill the bucket.
    gaps=st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0, max_value=0.05),
            st.floats(min_value=0, max_value=20),
        ),
        min_size=1,
        max_size=300,
    ),
)
def test_no_window_ever_holds_more_than_burst_plus_qps_times_its_length(
    qps: float, burst: int, gaps: list[float]
) -> None:
    """What a token bucket promises: in any window [a, b], at most burst + qps*(b-a)
    requests go; so never more than burst at the same instant. Also in order."""
    arrivals = [sum(gaps[: k + 1]) for k in range(len(gaps))]
    granted = grant_times(TokenBucket(qps=qps, burst=burst, now=0.0), arrivals)
    assert all(g >= a for g, a in zip(granted, arrivals, strict=True))
    assert granted == sorted(granted)
    for i in range(len(granted)):
        for j in range(i, len(granted)):
            count = j - i + 1
            assert count <= burst + qps * (granted[j] - granted[i]) + 1e-6


# --------------------------------------------------------------------------- on asyncio


class FakeClock:
    """A clock that sleeping advances, so no test waits in real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_acquire_sleeps_only_once_the_burst_is_spent_and_returns_the_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(qps=5, burst=2, clock=clock, sleep=clock.sleep)

    async def three() -> list[float]:
        return [await limiter.acquire() for _ in range(3)]

    assert asyncio.run(three()) == pytest.approx([0.0, 0.0, 0.2])
    assert clock.slept == pytest.approx([0.2])


def test_concurrent_waiters_go_in_arrival_order_without_blocking_the_loop() -> None:
    """Real time, small numbers: 10 requests at 200/s with a burst of 1 take ~45 ms,
    go in the order they asked, and the loop keeps running other work meanwhile."""
    limiter = RateLimiter(qps=200, burst=1)
    order: list[int] = []
    ticks = 0

    async def request(k: int) -> None:
        await limiter.acquire()
        order.append(k)

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def main() -> float:
        stop = asyncio.Event()
        tick = asyncio.create_task(ticker(stop))
        start = time.monotonic()
        await asyncio.gather(*(request(k) for k in range(10)))
        elapsed = time.monotonic() - start
        stop.set()
        await tick
        return elapsed

    elapsed = asyncio.run(main())
    assert order == list(range(10))
    assert elapsed >= 9 / 200 - 0.002
    assert ticks >= 5  # the loop ran the ticker while requests waited


def test_a_cancelled_waiter_keeps_its_token_so_the_limit_only_errs_slow() -> None:
    clock = FakeClock()
    limiter = RateLimiter(qps=1, burst=1, clock=clock, sleep=clock.sleep)
    assert asyncio.run(limiter.acquire()) == 0.0

    async def cancelled() -> None:
        task = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        task.cancel()

    never = asyncio.Event()

    async def hang(seconds: float) -> None:
        del seconds
        await never.wait()

    limiter._sleep = hang
    asyncio.run(cancelled())
    limiter._sleep = clock.sleep
    # The next request queues behind the cancelled one's token: 2 s, not 1 s.
    assert asyncio.run(limiter.acquire()) == pytest.approx(2.0)


# --------------------------------------------------------------------------- the httpx hook


class FakeApi:
    """The two attributes of kr8s's Api that limit_api relies on."""

    def __init__(self) -> None:
        self._session: httpx.AsyncClient | None = None
        self.sent = 0

    async def _create_session(self) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            self.sent += 1
            return httpx.Response(200, json={})

        self._session = httpx.AsyncClient(
            base_url="https://kube.invalid", transport=httpx.MockTransport(answer)
        )


def test_limit_api_hooks_the_current_client_and_every_one_built_later() -> None:
    clock = FakeClock()
    limiter = RateLimiter(qps=10, burst=2, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    api = FakeApi()

    async def main() -> None:
        await api._create_session()
        first = api._session
        limit_api(api, limiter, on_wait=waits.append)
        assert first is not None
        for _ in range(3):
            await first.get("/api/v1/namespaces")
        await api._create_session()  # as kr8s does to re-authenticate
        second = api._session
        assert second is not None
        assert second is not first
        for _ in range(2):
            await second.get("/api/v1/namespaces")
        await second.aclose()
        await first.aclose()

    asyncio.run(main())
    assert api.sent == 5
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.1, 0.1])
    assert clock.now == pytest.approx(0.3)


def test_limit_api_on_an_api_without_a_client_yet_hooks_the_first_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(qps=1, burst=1, clock=clock, sleep=clock.sleep)
    api = FakeApi()
    limit_api(api, limiter)

    async def main() -> None:
        await api._create_session()
        assert api._session is not None
        await api._session.get("/version")
        await api._session.get("/version")
        await api._session.aclose()

    asyncio.run(main())
    assert clock.slept == pytest.approx([1.0])


# --------------------------------------------------------------------------- the flags


def run_args(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """The kopf.Memo ``modelcanary run`` would start kopf with."""
    import kopf  # noqa: PLC0415

    seen: dict[str, Any] = {}

    def fake_run(**kwargs: Any) -> None:
        seen.update(kwargs["memo"])

    monkeypatch.setattr(kopf, "run", fake_run)
    assert cli_main.main(["run", *argv]) == 0
    return seen


def test_the_limit_is_on_by_default_with_the_documented_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_args(monkeypatch)["api_rate_limit"] == (DEFAULT_QPS, DEFAULT_BURST)
    assert (DEFAULT_QPS, DEFAULT_BURST) == (100.0, 200)


def test_the_flags_set_the_limit_and_one_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    memo = run_args(monkeypatch, "--api-qps", "2.5", "--api-burst", "7")
    assert memo["api_rate_limit"] == (2.5, 7)
    assert run_args(monkeypatch, "--no-api-rate-limit")["api_rate_limit"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-qps", "0"], "--api-qps: must be a number above 0, got 0; --no-api-rate-limit"),
        (["--api-qps=-5"], "--api-qps: must be a number above 0, got -5"),
        (["--api-qps", "nan"], "--api-qps: must be a number above 0"),
        (["--api-qps", "inf"], "--api-qps: must be a number above 0"),
        (["--api-qps", "fast"], "--api-qps: not a number: 'fast'"),
        (["--api-burst", "0"], "--api-burst: must be a number above 0, got 0"),
        (["--api-burst", "1.5"], "--api-burst: not a whole number: '1.5'"),
    ],
)
def test_a_rate_or_burst_that_is_not_positive_is_refused_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["run", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_run_help_names_the_flags_and_how_to_turn_the_limit_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--api-qps", "--api-burst", "--no-api-rate-limit"):
        assert flag in out
