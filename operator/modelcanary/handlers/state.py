"""What the kopf wiring's handlers share within one process.

The daemons, the event handler, the watches' wake-ups and sharded mode meet
here: each ModelDeployment's wake-up, keyed by uid; the owners the watches
route to it; and sharded mode's runtime once started. One per process, as
kopf's own registry is.
"""

from __future__ import annotations

import asyncio

from modelcanary.dispatch.runtime import ShardedRuntime
from modelcanary.view.wake import WakeRoutes

wakeups: dict[str, asyncio.Event] = {}
"""uid -> the event that wakes that ModelDeployment's daemon."""
seen_generation: dict[str, int | None] = {}
"""uid -> the generation the event handler saw last (a change of it wakes the daemon)."""
routes = WakeRoutes()
sharded: ShardedRuntime | None = None
"""Sharded mode's runtime, once started (None otherwise)."""
