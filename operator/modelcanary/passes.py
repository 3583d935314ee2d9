"""The edge every pass shares, a rollout's or a drill's: act in order, then write the status once.

Both passes have one shape: read the object, observe, let a pure function
decide, carry out its actions, write the status. The part after the decision
was written twice (``reconcile``, ``drill_executor``) and the copies drifted;
it lives here once, so a fix in one pass is a fix in both:

* actions are carried out in the order decided, and the first failure stops
  the rest, since a later action may depend on it (no traffic to a revision
  whose Deployment could not be made); the next pass observes the world as it
  is and decides again, so nothing is lost;
* the status is written once per pass, as an RFC 7386 merge patch of the
  status subresource, and not at all when nothing in it changed (an idle
  object costs no write);
* a handled manual action is cleared *by its id*: a JSON patch that first
  tests the annotation still holds the request the pass read, so a request a
  person made in the meantime stays for the next pass instead of vanishing.

The pass state both passes report (what was applied, what failed, whether
the status was written) is :class:`PassState`; each pass adds its decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kr8s
from kr8s.asyncio.objects import new_class

from modelcanary.apierrors import ACTION_ERRORS
from modelcanary.rest import ObjectRef
from modelcanary.rollout.actions import ANNOTATION, ANNOTATION_ID
from modelcanary.rollout.decision import Action

log = logging.getLogger(__name__)

ModelDeploymentResource = new_class(
    "ModelDeployment.modelcanary.io/v1alpha1", namespaced=True, asyncio=True
)
RollbackDrillResource = new_class(
    "RollbackDrill.modelcanary.io/v1alpha1", namespaced=True, asyncio=True
)


@dataclass
class PassState:
    """What one pass did at the edge, whichever object it was for."""

    applied: list[Action] = field(default_factory=list)
    failed: tuple[Action, str] | None = None
    """The action that failed and why; the actions after it were not tried."""
    status_written: bool = False


async def carry_out_in_order(
    actions: Sequence[Action],
    carry_out: Callable[[Action], Awaitable[None]],
    state: PassState,
    *,
    who: str,
) -> None:
    """Carry out ``actions`` in order; stop at the first one that fails."""
    for action in actions:
        try:
            await carry_out(action)
        except ACTION_ERRORS as error:
            log.warning("%s: %s failed: %s", who, action, error)
            state.failed = (action, str(error))
            return
        state.applied.append(action)


async def write_status(
    resource: ObjectRef, stored: Mapping[str, Any], wanted: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Patch the status subresource from ``stored`` to ``wanted``; the API server's
    answer, or None when nothing changed (nothing was sent)."""
    patch = merge_patch(stored, wanted)
    if not patch:
        return None
    return await resource.patch({"status": patch}, subresource="status")


async def clear_action(
    resource: ObjectRef, annotations: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Remove the manual-action annotations if they still hold what ``annotations``
    held; the API server's answer.

    None when a person has asked for something else since: that request stays.
    """
    request = annotations.get(ANNOTATION)
    if request is None:
        return None
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": _annotation_path(ANNOTATION), "value": request},
        {"op": "remove", "path": _annotation_path(ANNOTATION)},
    ]
    request_id = annotations.get(ANNOTATION_ID)
    if request_id is not None:
        ops[1:1] = [{"op": "test", "path": _annotation_path(ANNOTATION_ID), "value": request_id}]
        ops.append({"op": "remove", "path": _annotation_path(ANNOTATION_ID)})
    try:
        return await resource.patch(ops, type="json")
    except kr8s.ServerError as error:
        if error.response is not None and error.response.status_code == _UNPROCESSABLE:
            return None  # a failed test: the annotation holds a newer request
        raise


_UNPROCESSABLE = 422


def _annotation_path(key: str) -> str:
    # RFC 6901: "~" and "/" in a key are escaped as "~0" and "~1".
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """An RFC 7386 merge patch from ``before`` to ``after``: removed keys become null."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif value != old:
            patch[key] = value
    return patch


def remaining(requeue_after: float, *, since: float) -> float:
    """What is left of a decision's wait, counted from the start of its pass.

    ``decide`` counts ``requeue_after`` from the pass's own ``now``; sleeping it in
    full after the pass made every timer late by the pass's length, so one look
    per second came every 1.2 s and drifted against Prometheus's scrapes.
    """
    return max(0.0, requeue_after - (time.monotonic() - since))
