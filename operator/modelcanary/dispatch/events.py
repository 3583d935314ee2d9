"""Kubernetes Events for sharded mode, posted in the background.

kopf's ``kopf.event`` only works inside a task kopf started for an object: it
finds its queue through context variables that kopf's object processing sets,
and in sharded mode kopf processes no object (a pass there failed with a
``LookupError`` on its first event, found on the first run against an API
server). So sharded mode posts its own, the way kopf does: a core/v1 Event per
call, in the object's namespace, with the same reporting component, from one
background task so that a pass never waits on an Event and a slow or refused
post never fails a pass.

The queue is bounded: under an API-server outage, events beyond it are dropped
and counted in the log, never held without limit (status and history, not
Events, are the record).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kr8s.asyncio

from modelcanary.apierrors import API_ERRORS

log = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 1024
"""As kopf: the middle of a longer message is cut out."""
QUEUED = 1000
COMPONENT = "kopf"
"""kopf's default reporting component, so both modes' Events look the same to
``kubectl describe`` and to anything that selects on the source."""


def reference_to(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``involvedObject`` of an event about ``obj`` (a whole object, or kopf's
    body of one): what kopf's ``build_object_reference`` gives."""
    metadata = obj.get("metadata") or {}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
    }


@dataclass(frozen=True)
class ObjectEvent:
    reference: Mapping[str, Any]
    """apiVersion, kind, namespace, name, uid of the object the event is about."""
    type: str
    reason: str
    message: str


def event_body(event: ObjectEvent, now: datetime.datetime) -> dict[str, Any]:
    message = event.message
    if len(message) > MAX_MESSAGE_LENGTH:
        half = MAX_MESSAGE_LENGTH // 2 - 2
        message = f"{message[:half]}...{message[-half:]}"
    stamp = now.isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": event.reference["namespace"], "generateName": "kopf-event-"},
        "action": "Action?",
        "type": event.type,
        "reason": event.reason,
        "message": message,
        "reportingComponent": COMPONENT,
        "reportingInstance": "dev",
        "source": {"component": COMPONENT},
        "involvedObject": dict(event.reference),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": stamp,
    }


class EventPoster:
    """``post`` never blocks; ``run`` posts what was queued, in order."""

    def __init__(self, api: kr8s.asyncio.Api, *, queued: int = QUEUED) -> None:
        self.api = api
        self._queue: asyncio.Queue[ObjectEvent] = asyncio.Queue(maxsize=queued)
        self.dropped = 0

    def post(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """An event about ``obj`` (with its metadata), as ``kopf.event`` takes it."""
        try:
            self._queue.put_nowait(ObjectEvent(reference_to(obj), type, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("%d events dropped: the API server is not taking them", self.dropped)

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._send(event)
            except Exception:  # one bad event must not end every later one
                log.exception("event %s for %s not posted", event.reason, event.reference)

    async def drain(self) -> None:
        """At a graceful stop: post what is queued (errors logged), then return."""
        while not self._queue.empty():
            await self._send(self._queue.get_nowait())

    async def _send(self, event: ObjectEvent) -> None:
        body = event_body(event, datetime.datetime.now(datetime.UTC))
        try:
            async with self.api.call_api(
                "POST",
                version="v1",
                namespace=event.reference["namespace"],
                url="events",
                content=json.dumps(body),
                headers={"Content-Type": "application/json"},
            ):
                pass
        except API_ERRORS as error:
            log.warning("event %s for %s not posted: %s", event.reason, event.reference, error)
