"""What kopf does on every watch event of every object, made to cost less.

kopf handles each event of each ModelDeployment before any handler of ours
runs, and every status write of ours comes back as one more event. So its
per-event work is paid N times at start-up and on every pass that writes:
profiling a restart at N=400 (py-spy) put 15% of the event loop in kopf's
diff base and a log line per event beside our own passes. Two things here
change that, neither changing what kopf decides:

* :class:`SpecEssenceStorage`: kopf's "essence" of an object (what its change
  handlers compare, stored as the last-handled-configuration annotation) is
  built by deep-copying the whole body and then deleting the status and the
  metadata. A ModelDeployment's status (history, analysis evidence) is most of
  the object; here the essence is built from the spec, labels and annotations
  alone, copied as JSON (:func:`json_copy`), and never from the status. It is
  the same essence as kopf's, key order included (a test compares them): a
  restart of 3,000 (py-spy) still spent 9% of the operator's samples in
  kopf's ``copy.deepcopy`` of what was left after the status was dropped.
* :class:`EveryEventHandlerLog`: kopf logs "Handler 'nudge' succeeded." at INFO
  for the event handler, once per event: a line per status write per object,
  which says nothing and costs a log record each time. Its failures still log.
* :func:`idle`: kopf stops a daemon (its object deleted, the operator exiting)
  by setting ``stopped`` and then cancelling the task, and logs every such
  cancellation as a warning, "is cancelled. Will escalate.": one line per object
  at every restart and deletion, 1,000 at N=1,000, about nothing wrong. A
  daemon resting between passes ends quietly instead; a pass cut short still
  warns.

Only the kopf wiring (``handlers``) uses this module.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

import kopf

KOPF_OBJECT_LOGGER = "kopf.objects"
"""The logger kopf reports handler outcomes on."""


class SpecEssenceStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, built without copying what the essence drops."""

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        extra = list(extra_fields or [])
        if extra:
            # A handler asked for fields kopf would otherwise drop (status.x):
            # kopf's own build, from the whole body.
            return super().build(body=body, extra_fields=extra)
        metadata = body.get("metadata") or {}
        if self.ignored_fields or not all(
            isinstance(metadata.get(field, {}), Mapping) for field in _KEPT_METADATA
        ):
            # Fields to ignore, or metadata no API server sends: kopf's own build,
            # still without the stanzas it drops.
            return super().build(body=_without_dropped_stanzas(body))
        return self._essence(body, metadata)

    def _essence(self, body: kopf.Body, metadata: Mapping[str, Any]) -> kopf.BodyEssence:
        """What kopf's build gives, in kopf's order: the body's own stanzas but the
        identity, metadata and status; then the labels and the annotations, less
        other kopf operators' and kubectl's, and less this storage's own key."""
        essence: dict[str, Any] = {
            key: json_copy(value) for key, value in body.items() if key not in _DROPPED_STANZAS
        }
        kept = {field: json_copy(metadata[field]) for field in _KEPT_METADATA if field in metadata}
        if kept:
            essence["metadata"] = kept
        annotations = kept.get("annotations")
        if annotations:
            others = self._detect_marked_prefixes(annotations)
            own = set(self.make_keys(self.key, body=body))
            kept["annotations"] = {
                key: value
                for key, value in annotations.items()
                if key not in own
                and key != _LAST_APPLIED
                and not any(key.startswith(f"{prefix}/") for prefix in others)
            }
        self.remove_empty_stanzas(cast(kopf.BodyEssence, essence))
        return cast(kopf.BodyEssence, essence)


_DROPPED_STANZAS = frozenset({"apiVersion", "kind", "metadata", "status"})
_KEPT_METADATA = ("labels", "annotations")
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists and scalars), a third of ``copy.deepcopy``'s
    cost: it keeps no memo, since JSON from a watch has no shared or cyclic parts."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)


def _without_dropped_stanzas(body: kopf.Body) -> kopf.Body:
    """``body`` without its status and managed fields: kopf's build deletes both after
    deep-copying them. The rest of the metadata stays (the storage's keys read the
    owner references and the kind; the essence keeps labels and annotations)."""
    metadata = {
        key: value for key, value in (body.get("metadata") or {}).items() if key != "managedFields"
    }
    trimmed = {key: value for key, value in body.items() if key not in ("status", "metadata")}
    trimmed["metadata"] = metadata
    return kopf.Body(cast(kopf.RawBody, trimmed))


class EveryEventHandlerLog(logging.Filter):
    """Drops kopf's INFO "Handler 'NAME' succeeded." for handlers that run on every event."""

    def __init__(self, handlers: Collection[str]) -> None:
        super().__init__()
        self._messages = frozenset(f"Handler {name!r} succeeded." for name in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.getMessage() in self._messages)


def quiet_every_event_handlers(handlers: Collection[str]) -> EveryEventHandlerLog:
    """Install the filter on kopf's object logger (once per handler set); returns it."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, EveryEventHandlerLog):
            logger.removeFilter(existing)
    log_filter = EveryEventHandlerLog(handlers)
    logger.addFilter(log_filter)
    return log_filter


async def idle(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> bool:
    """Rest until ``wake`` is set or ``seconds`` pass: True to run the next pass,
    False when kopf is stopping the daemon (the caller returns)."""
    try:
        await asyncio.wait_for(wake.wait(), timeout=seconds)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        if not stopped:  # not kopf's stop: someone else's cancellation, theirs to handle
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # taken as the ordinary end it is
        return False
    return not stopped
