"""Start-up and clean-up: kopf's settings, the API client and its limit, the view.

Both modes start here: kopf's default registry (one daemon per object,
``models``) and sharded mode's registry (:data:`SHARDED`, ``sharded``).

kopf's own bookkeeping (finalizer, progress and last-handled configuration)
lives under the ``modelcanary.io`` prefix, so nothing in a user's objects says
``kopf.zalando.org``.

At most ``--max-concurrent-passes`` passes run at once. Every daemon shares
kr8s's one HTTP client, whose connection pool matches each waiting request
against each connection whenever one starts or ends: with a thousand daemons
firing at once, that matching cost grows with the square of the queue and
ate a whole core before any object got a status. A short queue of passes
keeps the pool's queue short; a pass is a few milliseconds of API calls, so
the wait for a slot is far below an analysis interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import kopf
import kr8s.asyncio
from prometheus_client import start_http_server

from modelcanary import ratelimit, telemetry
from modelcanary.dispatch.slots import PassSlots
from modelcanary.drill_executor import DrillExecutor
from modelcanary.gc_pauses import GcPauses
from modelcanary.handlers import state
from modelcanary.kopf_tuning import SpecEssenceStorage, quiet_every_event_handlers
from modelcanary.reconcile import Reconciler
from modelcanary.view.store import Owner, Store
from modelcanary.view.watch import View, Watcher, stop

PREFIX = "modelcanary.io"
DEFAULT_MAX_CONCURRENT_PASSES = 8

SHARDED = kopf.OperatorRegistry()
"""What ``run --shards`` gives kopf: start-up and clean-up, and no per-object handler.

kopf adds and removes its finalizer from every replica that has a handler
for the object (docs/sharding.md, "Wiring it in"); with none registered it
never writes a ModelDeployment or a RollbackDrill."""


@kopf.on.login(registry=SHARDED)
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """As kopf's default registry logs in (a registry of our own starts with no login
    handler, and kopf would then refuse to start): through the kubernetes client's
    kubeconfig or in-cluster configuration."""
    return kopf.login_via_client(**kwargs)


def _wake_owners(owners: set[Owner]) -> None:
    """A watch event changed these owners' objects: wake their passes."""
    if state.sharded is not None:
        state.sharded.feed.wake_owners(owners)
    for uid in state.routes.targets(owners):
        wake = state.wakeups.get(uid)
        if wake is not None:
            wake.set()


def count_requests(api: kr8s.asyncio.Api) -> None:
    """Count every request kr8s's client sends (``modelcanary_api_requests_total``)."""

    async def on_request(request: httpx.Request) -> None:
        watch = request.url.params.get("watch") == "true"
        telemetry.count_request("WATCH" if watch else request.method)

    ratelimit.on_every_request(api, on_request)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    await configure_both(settings, memo)


async def configure_both(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Settings, the API client, the labelled view, the pass machinery: both modes'."""
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = SpecEssenceStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    quiet_every_event_handlers(["nudge"])
    # Ten minutes, client-go's longest: kopf's three watches reconnect and do nothing
    # else at rest (the view's own ask for 5 to 10, view/watch.py).
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 30
    memo.gc_pauses = GcPauses(asyncio.get_running_loop(), freeze=getattr(memo, "gc_freeze", True))
    memo.gc_pauses.install()
    api = await kr8s.asyncio.api()
    # (qps, burst) from `run`; None when turned off; the defaults when unset.
    limit = getattr(memo, "api_rate_limit", (ratelimit.DEFAULT_QPS, ratelimit.DEFAULT_BURST))
    if limit is not None:
        qps, burst = limit
        ratelimit.limit_api(
            api, ratelimit.RateLimiter(qps, burst), on_wait=telemetry.API_RATE_LIMIT_WAIT.observe
        )
        telemetry.API_RATE_LIMIT_QPS.set(qps)
    count_requests(api)
    store = Store()
    memo.view = View(api, store)
    memo.watcher = Watcher(api, store, _wake_owners, namespaces=watched(memo))
    memo.watch_task = asyncio.create_task(memo.watcher.run(), name="modelcanary-view")
    memo.reconciler = Reconciler(api, view=memo.view)
    slots = getattr(memo, "max_concurrent_passes", None) or DEFAULT_MAX_CONCURRENT_PASSES
    memo.pass_slots = PassSlots(int(slots))
    memo.drills = DrillExecutor(memo.reconciler)
    port = getattr(memo, "metrics_port", None)
    if port:
        start_http_server(int(port), registry=telemetry.REGISTRY)


def watched(memo: kopf.Memo) -> list[str] | None:
    """The namespaces the view watches: kopf's, or all when kopf's are patterns
    (``ml-*``), which a watch cannot take; the passes select their own anyway."""
    namespaces = list(getattr(memo, "namespaces", None) or [])
    if not namespaces or any(set(ns) & set("*?[!") for ns in namespaces):
        return None
    return namespaces


@kopf.on.cleanup()
async def stop_watches(memo: kopf.Memo, **_: Any) -> None:
    await stop(getattr(memo, "watch_task", None))
    stop_gc_pauses(memo)


def stop_gc_pauses(memo: kopf.Memo) -> None:
    """Both modes' clean-up, the last before the process exits: the collector's hook off,
    and the whole heap frozen for the exit."""
    pauses: GcPauses | None = getattr(memo, "gc_pauses", None)
    if pauses is not None:
        pauses.remove(exiting=True)
