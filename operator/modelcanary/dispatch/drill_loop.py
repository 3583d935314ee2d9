"""A RollbackDrill's loop in sharded mode: what kopf's ``rehearse`` daemon did.

Run by the dispatcher in the replica that owns the drill's ModelDeployment's
shard, while the drill is not finished (the feed stops it once it is). Each
step is one drill pass (given by ``handlers``, which reports it and wakes the
ModelDeployment's loop when the drill starts or ends); a failed pass is tried
again after a backoff; the loop asks :meth:`ObjectLoop.owns` before each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelcanary.apierrors import API_ERRORS
from modelcanary.dispatch.loops import ObjectLoop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrillWork:
    """What a drill's loop needs from the operator."""

    one_pass: Callable[[str, str], Awaitable[float | None]]
    """One pass of namespace/name, reported; seconds until the next, None when finished or gone."""
    retry_seconds: float = 5.0


async def run_drill(loop: ObjectLoop, work: DrillWork) -> None:
    """Until the drill is finished or gone, or the loop is told to stop."""
    namespace, name = loop.key.namespace, loop.key.name
    while loop.owns():
        try:
            delay = await work.one_pass(namespace, name)
        except API_ERRORS as error:
            log.warning("%s/%s: drill pass failed: %s", namespace, name, error)
            delay = work.retry_seconds
        if delay is None:
            return
        await loop.sleep(delay)
