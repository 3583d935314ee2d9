"""A client-side rate limit on the operator's Kubernetes API requests.

A token bucket, like client-go's (``--kube-api-qps`` / ``--kube-api-burst``):
``burst`` requests may go at once, after which requests go at ``qps`` per
second. A restart with 10,000 ModelDeployments, or a thousand objects created
in one ``kubectl apply``, then costs the API server at most ``burst`` requests
at once and ``qps`` a second after that, however many passes want to run; the
passes simply take longer.

The defaults, 100 requests a second with bursts of 200, sit among what other
controllers ship: client-go's own 5/10 and controller-runtime's 20/30 are for
small controllers; Argo Rollouts ships 40/80 and Flagger 100/250, both for
progressive delivery at scale. The sums for this operator: creating a
ModelDeployment takes a handful of writes (its revision's Deployment and
Service, its route, its status), so 1,000 created at once are about 5,000
requests, 50 s at 100/s, which keeps the one-minute ramp the scale targets
ask for; a pass that reads from a watch cache makes no request at rest, and a
hundred canaries writing weights and status every 15 s need about 20 a
second. Without a limit a restart is as fast as the event loop can go: the
polling design measured 143 requests a second at rest with 1,000 objects,
which is some 1,400 a second with 10,000. 100/s from one client is far under
what one kube-apiserver serves, and its priority and fairness still apply on
top. A request waits at most about (requests queued ahead) / qps; with
``--max-concurrent-passes`` bounding the passes in flight, that queue is short.

What the limit covers: every request made through the kr8s API object the
operator builds in ``handlers.configure`` (the reconciler, the drill
executor, and every workload, router and drill-schedule edge share it),
including kr8s's own retries after a 401/403 and each hop of a redirect. What
it does not cover: kopf's own client (aiohttp), which lists and watches
ModelDeployments and RollbackDrills and patches its finalizers, progress
annotations and peering: a few long-lived watch requests plus a patch or two
per handled change, which this limit does not see. Nor the shard Leases of
sharded mode, which go through a client of their own on a thread of their own
(``shards.thread`` says why). Nor the Prometheus
queries, which are not API requests.

The bucket (``TokenBucket``) is pure: it is given the time, so tests drive it
with a fake clock. ``RateLimiter`` puts it on asyncio: a request reserves the
next token at once, without a lock (one event loop, no await between reading
and updating the bucket), and sleeps until the token is due with
``asyncio.sleep``, so waiting never blocks the event loop, and waiters go in
the order they arrived (each reservation is due later than the one before).
A waiter that is cancelled does not give its token back, so the limit can only
err towards fewer requests. ``limit_api`` hooks the limiter into kr8s's
``httpx.AsyncClient`` as a request event hook, on the client kr8s has now and
on every client it builds later (kr8s rebuilds it to re-authenticate).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

DEFAULT_QPS = 100.0
DEFAULT_BURST = 200


class TokenBucket:
    """``burst`` tokens at most, refilled at ``qps`` a second; time is passed in.

    ``reserve`` takes one token and says how long to wait before it is due.
    Tokens may go below zero: that is the queue of reservations made ahead of
    their time, each due ``1/qps`` after the one before.
    """

    def __init__(self, qps: float, burst: int, now: float) -> None:
        if not 0 < qps < math.inf:
            raise ValueError(f"qps must be a number above 0, got {qps}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.qps = float(qps)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._last = now

    def reserve(self, now: float) -> float:
        """Take the next token; return the seconds until it may be used (0: now)."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def _refill(self, now: float) -> None:
        # A clock that steps back (it should not: monotonic) adds nothing.
        elapsed = max(0.0, now - self._last)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
        self._last = max(self._last, now)


class RateLimiter:
    """The bucket on asyncio: ``await acquire()`` before each request."""

    def __init__(
        self,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(qps, burst, clock())

    @property
    def qps(self) -> float:
        return self._bucket.qps

    @property
    def burst(self) -> int:
        return self._bucket.burst

    async def acquire(self) -> float:
        """Wait for a token without blocking the loop; return the seconds waited."""
        delay = self._bucket.reserve(self._clock())
        if delay > 0:
            await self._sleep(delay)
        return delay


def request_hook(
    limiter: RateLimiter, on_wait: Callable[[float], None] | None = None
) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request event hook that waits for ``limiter`` before every request."""

    async def wait_for_token(request: httpx.Request) -> None:
        del request
        waited = await limiter.acquire()
        if on_wait is not None:
            on_wait(waited)

    return wait_for_token


def _hook_session(session: httpx.AsyncClient | None, hook: Any) -> None:
    if session is not None:
        hooks = session.event_hooks
        session.event_hooks = {"request": [*hooks["request"], hook], "response": hooks["response"]}


def limit_api(
    api: Any, limiter: RateLimiter, on_wait: Callable[[float], None] | None = None
) -> None:
    """Put every request of the kr8s async ``api`` through ``limiter``."""
    on_every_request(api, request_hook(limiter, on_wait))


def on_every_request(api: Any, hook: Callable[[httpx.Request], Awaitable[None]]) -> None:
    """Run ``hook`` before every request the kr8s async ``api`` sends.

    kr8s builds its ``httpx.AsyncClient`` in ``Api._create_session``, and
    builds a new one when it re-authenticates or finds it closed, so the hook
    goes on the client it has now and on every client built later. kr8s has
    no public hook for this; tests/integration/test_api_rate_limit.py fails if
    a kr8s upgrade moves it (the requests would stop being limited, and
    ``modelcanary_api_requests_total`` would stop counting).
    """
    create_session = api._create_session

    async def create_hooked_session() -> None:
        await create_session()
        _hook_session(api._session, hook)

    api._create_session = create_hooked_session
    _hook_session(api._session, hook)
