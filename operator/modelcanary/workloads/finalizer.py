"""The ModelDeployment's finalizer, held by its own pass (sharded mode) rather than by kopf.

Same name as kopf's (``modelcanary.io/finalizer``, from ``handlers``' prefix),
so objects that kopf finalized carry over as they are. The finalizer holds a
deleted ModelDeployment until its pass has given the user's HTTPRoute back;
Deployments go with their owner reference.

Only the replica that owns the object's shard writes it, and it writes only
what it read: a JSON patch that first *tests* the list it read (other
controllers keep their finalizers in the same list) and then sets the new
list. A failed test (422) means the list moved since the read: nothing is
written, and the next pass reads again. Adding to a missing list tests the
object's resourceVersion instead (a test of a missing member cannot be
written).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import kr8s
from kr8s.asyncio.objects import APIObject

FINALIZER: Final = "modelcanary.io/finalizer"
_UNPROCESSABLE: Final = 422


def finalizer_ops(metadata: Mapping[str, Any], *, keep: bool) -> list[dict[str, Any]]:
    """The JSON patch that gives ``metadata`` the finalizer (``keep``) or takes it off.

    Empty when the list is already as wanted. Every other finalizer stays, in order.
    """
    read = metadata.get("finalizers")
    current = list(read or [])
    if (FINALIZER in current) == keep:
        return []
    wanted = [*current, FINALIZER] if keep else [f for f in current if f != FINALIZER]
    if read is None:
        version = metadata["resourceVersion"]
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/finalizers", "value": wanted},
        ]
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": wanted},
    ]


async def set_finalizer(resource: APIObject, metadata: Mapping[str, Any], *, keep: bool) -> bool:
    """Add (``keep``) or remove the finalizer, if the list is still what ``metadata`` says.

    True when the object now is as wanted (written, or already so); False when
    the list moved since the read (the next pass reads again) or the object is
    gone. Other API errors are raised, as for any action.
    """
    ops = finalizer_ops(metadata, keep=keep)
    if not ops:
        return True
    try:
        await resource.patch(ops, type="json")
    except kr8s.NotFoundError:
        return False  # gone: kr8s says so with its own error, not a ServerError
    except kr8s.ServerError as error:
        if error.response is not None and error.response.status_code == _UNPROCESSABLE:
            return False
        raise
    return True
