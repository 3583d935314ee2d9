"""Sharded mode (``run --shards N``, docs/sharding.md): kopf's :data:`SHARDED` registry.

Log-in, start-up and clean-up only, no per-object handler, so kopf never
writes a ModelDeployment. The passes, the finalizer, the drills and the drill
schedule run in :class:`~modelcanary.dispatch.runtime.ShardedRuntime`'s loops,
in the replica that owns each object's shard, with the same pass and
reporting as kopf's daemons (``models``, ``drills``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
import kr8s.asyncio

from modelcanary import telemetry
from modelcanary.apierrors import API_ERRORS
from modelcanary.dispatch.drill_loop import DrillWork
from modelcanary.dispatch.model_loop import ModelDeploymentWork
from modelcanary.dispatch.runtime import ShardedRuntime
from modelcanary.drill_executor import DrillExecutor
from modelcanary.handlers import state
from modelcanary.handlers.drills import match_drill_schedule, one_drill_pass
from modelcanary.handlers.models import ERROR_BACKOFF_SECONDS, give_back, one_pass
from modelcanary.handlers.startup import (
    SHARDED,
    configure_both,
    count_requests,
    stop_gc_pauses,
    watched,
)
from modelcanary.passes import ModelDeploymentResource
from modelcanary.reconcile import Reconciler
from modelcanary.shards.leases import LeaseStore
from modelcanary.shards.ownership import Timing
from modelcanary.view.store import MODEL_DEPLOYMENT, Store
from modelcanary.view.watch import stop
from modelcanary.workloads.drill_schedule import DrillScheduleConflict

log = logging.getLogger(__name__)


@kopf.on.startup(registry=SHARDED)
async def start_sharded(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """What ``configure`` does, then this replica's shard Leases and object loops."""
    await configure_both(settings, memo)
    reconciler: Reconciler = memo.reconciler
    store = Store()

    async def schedule(body: Mapping[str, Any], *, first: bool) -> bool:
        try:
            await match_drill_schedule(memo, body, changed=not first)
        except DrillScheduleConflict as conflict:
            log.warning("%s", conflict)
            return False
        except API_ERRORS as error:
            log.warning("drill schedule: %s", error)
            return False
        return True

    model_work = ModelDeploymentWork(
        read=lambda namespace, name: store.get(MODEL_DEPLOYMENT, namespace, name),
        one_pass=lambda body: one_pass(reconciler, body),
        give_back=lambda body: give_back(reconciler, body),
        resource=lambda body: ModelDeploymentResource(dict(body), api=reconciler.api),
        slots=memo.pass_slots,
        schedule_drills=schedule,
        retry_seconds=ERROR_BACKOFF_SECONDS,
        forget=lambda namespace, name, uid: forget_model(reconciler, namespace, name, uid),
    )
    drills: DrillExecutor = memo.drills
    runtime = state.sharded = ShardedRuntime(
        reconciler.api,
        lease_namespace=memo.shard_namespace,
        identity=memo.shard_identity,
        shards=int(memo.shards),
        timing=Timing.scaled(float(getattr(memo, "shard_lease_seconds", None) or 15)),
        namespaces=watched(memo),
        model_work=model_work,
        drill_work=DrillWork(
            one_pass=lambda namespace, name: one_drill_pass(drills, namespace, name),
            retry_seconds=ERROR_BACKOFF_SECONDS,
        ),
        store=store,
        on_model_deployment=reconciler.own_writes.seen,
        lease_store=lambda: lease_store(memo.shard_namespace),
    )
    runtime.start()


async def lease_store(namespace: str) -> LeaseStore:
    """The Lease thread's store, over a kr8s client of that thread's own (kr8s keeps one
    per thread and event loop): counted in ``modelcanary_api_requests_total``, and not
    held to the passes' rate limit (``shards.thread`` says why)."""
    api = await kr8s.asyncio.api()
    count_requests(api)
    return LeaseStore(api, namespace)


def forget_model(reconciler: Reconciler, namespace: str, name: str, uid: str) -> None:
    """A sharded loop ended: the object is gone, or another replica runs it and exports
    its status now."""
    reconciler.forget(uid)
    telemetry.forget(namespace, name)


@kopf.on.cleanup(registry=SHARDED)
async def stop_sharded(memo: kopf.Memo, **_: Any) -> None:
    """Every loop ended, then the Leases released at once (the others take over in a round)."""
    runtime, state.sharded = state.sharded, None
    if runtime is not None:
        await runtime.stop()
    await stop(getattr(memo, "watch_task", None))
    stop_gc_pauses(memo)
