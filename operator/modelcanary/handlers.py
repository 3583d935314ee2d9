"""kopf wiring: the only module that imports kopf.

One daemon per ModelDeployment runs passes (``reconcile.Reconciler``) in a
loop: observe, decide, act, write status once, then sleep for as long as the
decision asked (a pause's remainder, the next analysis, or an idle minute).
A change of the spec or a manual-action annotation wakes it at once, so a new
predictor or a ``promote`` is seen in well under a second, while the steady
state costs two API calls per object per idle interval.

kopf's own bookkeeping (finalizer, progress and last-handled configuration)
lives under the ``modelcanary.io`` prefix, so nothing in a user's objects says
``kopf.zalando.org``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf
import kr8s
import kr8s.asyncio
from prometheus_client import start_http_server

from modelcanary import telemetry
from modelcanary.api.modeldeployment import GROUP, VERSION, ModelDeploymentSpec
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.reconcile import ModelDeploymentResource, PassResult, Reconciler
from modelcanary.rollout.actions import ANNOTATION

PLURAL = "modeldeployments"
PREFIX = "modelcanary.io"
ERROR_BACKOFF_SECONDS = 5.0

log = logging.getLogger(__name__)
_wakeups: dict[str, asyncio.Event] = {}
_seen_generation: dict[str, int | None] = {}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    memo.reconciler = Reconciler(await kr8s.asyncio.api())
    port = getattr(memo, "metrics_port", None)
    if port:
        start_http_server(int(port), registry=telemetry.REGISTRY)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def rollout(
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Run passes for one ModelDeployment until it is deleted or the operator stops."""
    assert namespace is not None  # the resource is namespaced
    wake = _wakeups.setdefault(uid, asyncio.Event())
    reconciler: Reconciler = memo.reconciler
    try:
        while not stopped:
            wake.clear()
            delay = await _one_pass(reconciler, namespace, name)
            if delay is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
    finally:
        _wakeups.pop(uid, None)
        _seen_generation.pop(uid, None)


async def _one_pass(reconciler: Reconciler, namespace: str, name: str) -> float | None:
    """One pass on a fresh read of the object; returns seconds to sleep (None: it is gone)."""
    with telemetry.RECONCILE_SECONDS.time():
        try:
            resource = await ModelDeploymentResource.get(
                name, namespace=namespace, api=reconciler.api
            )
        except kr8s.NotFoundError:
            return None
        except (kr8s.ServerError, OSError) as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "read").inc()
            log.warning("%s/%s: cannot read: %s", namespace, name, error)
            return ERROR_BACKOFF_SECONDS
        obj = resource.raw
        try:
            result = await reconciler.run_pass(obj)
        except (kr8s.ServerError, OSError) as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "pass").inc()
            log.warning("%s/%s: pass failed: %s", namespace, name, error)
            return ERROR_BACKOFF_SECONDS
    _report(obj, result)
    if result.failed is not None:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "act").inc()
        return min(result.decision.requeue_after, ERROR_BACKOFF_SECONDS)
    return result.decision.requeue_after


def _report(obj: Mapping[str, Any], result: PassResult) -> None:
    metadata = obj["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    decision = result.decision
    reference = kopf.Body(
        cast(
            kopf.RawBody,
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {"namespace": namespace, "name": name, "uid": metadata["uid"]},
            },
        )
    )
    for event in decision.events:
        kopf.event(reference, type=event.type, reason=event.reason, message=event.message)
    if result.failed is not None:
        action, error = result.failed
        kopf.event(
            reference,
            type="Warning",
            reason="ActionFailed",
            message=f"{type(action).__name__} failed: {error}",
        )
    telemetry.record_status(namespace, name, decision.status)
    telemetry.record_events(namespace, name, [e.reason for e in decision.events])
    if result.rollback_seconds is not None:
        telemetry.TIME_TO_ROLLBACK.labels(namespace).observe(result.rollback_seconds)


@kopf.on.event(GROUP, VERSION, PLURAL)
def nudge(uid: str, body: kopf.Body, **_: Any) -> None:
    """Wake the daemon when a person changed something: the spec, or an action."""
    generation = body.get("metadata", {}).get("generation")
    annotations = body.get("metadata", {}).get("annotations") or {}
    changed = _seen_generation.get(uid) != generation
    _seen_generation[uid] = generation
    wake = _wakeups.get(uid)
    if wake is not None and (changed or ANNOTATION in annotations):
        wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Give a user's HTTPRoute back as it was; Deployments go with their owner."""
    assert namespace is not None  # the resource is namespaced
    telemetry.forget(namespace, name)
    try:
        spec = parse(ModelDeploymentSpec, dict(body.get("spec") or {}), prefix="spec")
    except InvalidSpecError:
        return
    reconciler: Reconciler = memo.reconciler
    router = reconciler.router_of(body, spec)
    await router.finalize()
